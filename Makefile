# Quick start: `make demo` runs a real small search study; `make test` runs the tests.
# Both create .venv on first use (torch 2.13.0 CPU first, then the project).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench-quick clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/nnsearch demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)

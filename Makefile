# Quick start: `make demo` runs a real small search study; `make test` runs every check CI runs.
# Both create .venv on first use (torch 2.13.0 CPU first, then the project).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test docs clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,docs]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/nnsearch demo

docs: $(VENV)/.installed
	$(VENV)/bin/mkdocs build --strict

test: $(VENV)/.installed
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)

# Quick start: `make demo` runs a real small search study; `make test` runs every check CI runs.
# Both create .venv on first use (torch 2.13.0 CPU first, then the project).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# What ruff lints and formats (mypy checks the package and benchmarks/: [tool.mypy] in pyproject.toml).
LINTED := nnsearch tests benchmarks docs/hooks.py

.PHONY: demo test lint docs clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,docs]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/nnsearch demo

# Lint, format check and type check, then the documentation site, then the test suite.
test: lint docs
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy

docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict  # not --quiet: it would hide the warnings --strict fails on

clean-venv:
	rm -rf $(VENV)

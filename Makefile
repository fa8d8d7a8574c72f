# Every target sets itself up: a virtual environment with the CPU build of torch
# (installed first and pinned, so nothing pulls a CUDA build), then the project.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
DOCS_STAMP := $(VENV)/.installed-docs-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench install docs

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test,benchmarks]"
	touch $(STAMP)

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m metaloss_sk demo

test: $(STAMP)
	$(BIN)/python -m ruff check metaloss_sk tests benchmarks examples
	$(BIN)/python -m pytest -q --timeout=600

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_speed.py

# The site, offline (no intersphinx inventories), warnings as errors. The examples run
# again each time (a minute on 2 cores): a stale gallery page would hide a broken example.
docs: $(DOCS_STAMP)
	rm -rf docs/_build docs/generated docs/auto_examples docs/sg_execution_times.rst
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html
	@echo "open docs/_build/html/index.html"

# Everything installs itself: a fresh machine needs only Python 3.10+ and pip.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-test
RUNSTAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install run test lint bench-quick clean

help:
	@echo "make run          serve the demo app on http://127.0.0.1:8000"
	@echo "make test         lint (ruff, mypy) and run the whole test suite"
	@echo "make lint         ruff and mypy only"
	@echo "make bench-quick  wsgiserve vs a do-nothing uvloop+httptools responder (needs 2 cores)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

$(RUNSTAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(RUNSTAMP)

install: $(STAMP)

run: $(RUNSTAMP)
	$(BIN)/wsgiserve wsgiserve.demo:app -b 127.0.0.1:8000 --access-logfile -

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

# wrk comes from Debian's packages; installed on first use.
bench-quick: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python -m benchmarks.bench_quick

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache

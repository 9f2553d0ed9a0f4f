# Everything installs itself: a fresh machine needs only Python 3.10+ and pip.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-test
RUNSTAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install run test test-tools lint compiled test-compiled bench-quick bench fuzz clean dist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

help:
	@echo "make run          serve the demo app on http://127.0.0.1:8000"
	@echo "make test         lint (ruff, mypy), the whole test suite, functional tests in asyncio debug"
	@echo "make lint         ruff (check and format) and mypy only"
	@echo "make compiled     the optional compiled build (mypyc) into build/compiled; see the README"
	@echo "make test-compiled  the test suite again, on the compiled build"
	@echo "make bench-quick  wsgiserve vs a do-nothing uvloop+httptools responder (needs 2 cores)"
	@echo "make bench        wsgiserve vs gunicorn, waitress, granian and others (~20 min)"
	@echo "make dist         build the sdist and the wheel (wsgiserve-server) into dist/"
	@echo "make fuzz         fuzz the request parser against h11 for FUZZ_SECONDS (default 60)"

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
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# nginx and systemd-socket-activate (tests/integration/test_nginx.py, test_systemd.py)
# come from Debian's packages; installed on first use, like wrk.
test-tools:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends nginx; }
	@command -v systemd-socket-activate >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends systemd; }
	@test -x /usr/sbin/apache2 && test -e /usr/lib/apache2/modules/mod_proxy_uwsgi.so || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends \
	      apache2 libapache2-mod-proxy-uwsgi; }
	@# unshare and mount: test_identity.py gives the server a private /etc/group.
	@command -v unshare >/dev/null 2>&1 && command -v mount >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends \
	      util-linux mount; }

# Then the functional suite again under asyncio debug (~80 s): uvloop raises on loop calls
# from a worker thread, and tests/conftest.py fails a test whose loop logs a complaint.
# A run narrowed with PYTEST_ARGS skips it.
test: lint test-tools
	$(BIN)/pytest $(PYTEST_ARGS)
	$(if $(PYTEST_ARGS),,PYTHONASYNCIODEBUG=1 $(BIN)/pytest -q tests/functional)

# The optional compiled build: the request path compiled with mypyc, beside the rest of the
# package in build/compiled (never in the source tree, where an edited .py would be shadowed
# by a stale .so). PYTHONPATH puts it first; pytest's append mode, and PYTHONSAFEPATH for
# the `python -m wsgiserve` subprocesses the tests start in the checkout, keep the checkout
# behind it. WSGISERVE_EXPECT_COMPILED makes the suite check that the compiled modules are
# the ones it imported (tests/unit/test_build_info.py, test_cli.py's test_version).
COMPILED := build/compiled

# A C compiler and Python.h: Debian's packages on first use, like wrk.
compiled: $(STAMP)
	@command -v cc >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends gcc libc6-dev; }
	@$(BIN)/python -c "import os, sysconfig; os.stat(sysconfig.get_paths()['include'] + '/Python.h')" \
	  2>/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-dev; }
	rm -rf $(COMPILED) build/compiled-temp
	WSGISERVE_COMPILE=1 $(BIN)/python setup.py -q build --build-lib $(COMPILED) \
	  --build-temp build/compiled-temp

test-compiled: compiled test-tools
	WSGISERVE_EXPECT_COMPILED=1 PYTHONPATH=$(abspath $(COMPILED)) PYTHONSAFEPATH=1 \
	  $(BIN)/pytest --import-mode=append $(PYTEST_ARGS)

# wrk comes from Debian's packages; installed on first use.
bench-quick: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python -m benchmarks.bench_quick

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache

# The distribution is `wsgiserve-server` (the index's `wsgiserve` is another project).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

# wsgiserve (pure Python and compiled) vs. other WSGI servers (wrk, peers in
# benchmarks/.venv-bench; ~20 min, needs 2 cores).
# Narrow it: make bench SCENARIOS=hello,big SERVERS=wsgiserve,granian BENCH_ARGS="--rounds 2"
BENCH_PY := benchmarks/.venv-bench/bin/python
SCENARIOS ?=
SERVERS ?=
BENCH_ARGS ?=

bench: compiled
	@command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }
	$(PYTHON) benchmarks/setup_env.py
	$(BENCH_PY) -m benchmarks.bench $(if $(SCENARIOS),--scenarios $(SCENARIOS)) $(if $(SERVERS),--servers $(SERVERS)) $(BENCH_ARGS)

FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(BIN)/python -m tests.fuzz.run --seconds $(FUZZ_SECONDS)

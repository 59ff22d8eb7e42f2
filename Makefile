# fraudstream: the two commands a newcomer needs are `make demo` and `make test`.
# Both install into a virtual environment (Debian 12 refuses `pip install` outside one): the active one when
# VIRTUAL_ENV is set, else `.venv` in the repository, created on first use.
PYTHON ?= python3
VENV ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
VENV_PYTHON := $(VENV)/bin/python
PIP := $(VENV_PYTHON) -m pip
# Run everything with the venv first on PATH: tests spawn `python3` and `fraudstream` subprocesses.
IN_VENV := PATH="$(abspath $(VENV))/bin:$$PATH" VIRTUAL_ENV="$(abspath $(VENV))"
PYTEST_ARGS ?=

.PHONY: venv install install-test demo test test-unit test-integration bench screenshot lint clean

venv:
	bash scripts/ensure_venv.sh "$(VENV)" "$(PYTHON)"

install: venv
	$(PIP) install -q -e '.[demo]'

install-test: venv
	$(PIP) install -q -e '.[test,demo]'
	bash scripts/install_system_deps.sh

## Install, then run the whole thing: embedded broker and Redis, sample stream, models, worker, Prometheus with
## its dashboard.  Debian's prometheus is installed when missing and possible; the demo runs without it too.
demo: install
	bash scripts/install_system_deps.sh --best-effort prometheus
	$(IN_VENV) fraudstream demo

## Lint (ruff, imports sorted) and type-check (mypy, strict on stream/ and review_queue/).  mypy reads the
## packages as ``fraudstream.<folder>`` through a tree of links under build/typecheck (see pyproject.toml).
TYPECHECK_ROOT := build/typecheck/fraudstream
lint: install-test
	mkdir -p $(TYPECHECK_ROOT)
	for d in detectors training stream review_queue cli; do ln -sfn ../../../$$d $(TYPECHECK_ROOT)/$$d; done
	$(IN_VENV) ruff check .
	$(IN_VENV) mypy -p fraudstream

## Install what the tests need (Python packages, Debian prometheus + chromium), lint, then run every test, then
## the benchmark suite's quick run (its tables; a missed floor does not fail it, a broken benchmark does).
test: lint
	$(IN_VENV) bash scripts/run_tests.sh $(PYTEST_ARGS)
	$(IN_VENV) fraudstream bench --quick
	$(IN_VENV) python scripts/audit_dependencies.py

test-unit: install-test
	$(IN_VENV) bash scripts/run_tests.sh tests/unit $(PYTEST_ARGS)

test-integration: install-test
	$(IN_VENV) bash scripts/run_tests.sh -m integration $(PYTEST_ARGS)

bench: install
	$(IN_VENV) fraudstream bench

## The README's dashboard picture: a short real demo, its console page captured in headless chromium.
screenshot: install-test
	$(IN_VENV) python scripts/dashboard_screenshot.py --out docs/dashboard.png

clean:
	rm -rf build *.egg-info .pytest_cache

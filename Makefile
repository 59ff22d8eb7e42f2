# fraudstream: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
PYTEST_ARGS ?=

.PHONY: install install-test demo test test-unit test-integration bench lint clean

install:
	$(PIP) install -q -e .

install-test:
	$(PIP) install -q -e '.[test]'
	bash scripts/install_system_deps.sh

## Install, then run the whole thing: embedded broker and Redis, sample stream, models, worker, metrics.
demo: install
	fraudstream demo

## Install what the tests need (Python packages, Debian prometheus + chromium), then run every test.
test: install-test
	bash scripts/run_tests.sh $(PYTEST_ARGS)

test-unit: install-test
	bash scripts/run_tests.sh tests/unit $(PYTEST_ARGS)

test-integration: install-test
	bash scripts/run_tests.sh -m integration $(PYTEST_ARGS)

bench: install
	$(PYTHON) bench/bench_worker.py

clean:
	rm -rf build *.egg-info .pytest_cache

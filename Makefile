# Set-up is part of every target: a fresh machine needs only Python 3.11 and a package index.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
BIN := $(VENV)/bin

.PHONY: run lint test test-all test-multihost bench clean

LINTED := contlearn experiments tests benchmarks examples setup.py

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/contlearn run $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

# loadgroup: tests marked with one `xdist_group` run in one worker (they share a compiled program); the rest as `load`.
test: lint
	$(BIN)/python -m pytest -q -n auto --maxprocesses=4 --dist loadgroup --durations=10 $(ARGS)

# The multihost tests (slow ones included) run after the rest, one at a time (see test-multihost).
test-all: lint
	$(BIN)/python -m pytest -q -n auto --maxprocesses=4 --dist loadgroup -m 'not multihost' $(ARGS)
	$(BIN)/python -m pytest -q -p no:xdist -m multihost tests/multihost $(ARGS)

# Every test starts 2-3 processes: run them one at a time, not under xdist (beside other tests on a
# loaded machine, the processes can miss JAX's 30-second rendezvous).
test-multihost: lint
	$(BIN)/python -m pytest -q -p no:xdist -m multihost tests/multihost $(ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py $(ARGS)

clean:
	rm -rf $(VENV) runs bench_results build dist

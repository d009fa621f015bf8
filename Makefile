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

test: lint
	$(BIN)/python -m pytest -q -n auto --maxprocesses=4 --durations=10 $(ARGS)

test-all: lint
	$(BIN)/python -m pytest -q -n auto --maxprocesses=4 -m '' $(ARGS)

# Every test starts 2-3 processes: run them one at a time, not under xdist.
test-multihost: lint
	$(BIN)/python -m pytest -q -p no:xdist -m multihost tests/multihost $(ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py $(ARGS)

clean:
	rm -rf $(VENV) runs bench_results build dist

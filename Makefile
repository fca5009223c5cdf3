# Two commands do everything: `make demo` runs the product, `make test` passes the tests.
# Both create .venv and install what they need.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-faults lint demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

# Only the fault-injection suite (also part of `make test`).
test-faults: $(STAMP)
	$(BIN)/pytest -m faults

# The benchmarks (bench/README.md): each prints one table; about half an hour in all.
bench: $(STAMP)
	$(BIN)/python -m bench.reconcile
	$(BIN)/python -m bench.latency
	$(BIN)/python -m bench.ingest

demo: $(STAMP)
	$(BIN)/python -m sandbox.demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache

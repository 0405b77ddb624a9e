# Everything a fresh clone needs: `make test` builds .venv from pyproject.toml by itself.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test test-shuffled lint typecheck pytest install demo bench-enqueue bench-claim bench-route bench-intake bench-retention bench-throughput bench-soak bench-slow-receiver clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

# The same in a random order (pytest-random-order; the seed is printed, rerun with --random-order-seed=N).
test-shuffled: lint typecheck $(STAMP)
	$(BIN)/pytest --random-order

demo: $(STAMP)
	$(BIN)/outbox demo

bench-enqueue: $(STAMP)
	$(BIN)/python bench/enqueue.py

bench-claim: $(STAMP)
	$(BIN)/python bench/claim.py

bench-route: $(STAMP)
	$(BIN)/python bench/route.py

bench-intake: $(STAMP)
	$(BIN)/python bench/intake.py

bench-retention: $(STAMP)
	$(BIN)/python bench/retention.py

bench-throughput: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/throughput.py

# An hour by default; e.g. `make bench-soak SOAK_ARGS="--minutes 10 --rate 300"` or SOAK_ARGS=--find-rate.
SOAK_ARGS ?=
bench-soak: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

bench-slow-receiver: $(STAMP)
	$(BIN)/python bench/slow_receiver.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

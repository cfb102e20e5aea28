# The two commands of the quick start: `make run` and `make test`.
# Everything else here is what they are made of.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck check-imports format migrate clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

## Serve on http://127.0.0.1:8000 (docs at /docs) on the embedded SQLite database.
run: $(STAMP)
	$(BIN)/promptstack serve

## Lint, type-check, check the layers, and run the whole test suite.
test: $(STAMP) lint typecheck check-imports
	$(BIN)/python -m pytest -n auto

## The whole suite with line coverage (threads and SQLAlchemy's greenlets followed).
.PHONY: coverage
coverage: $(STAMP)
	$(BIN)/python -m pytest -n auto --cov --cov-report=term

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check-imports: $(STAMP)
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: $(STAMP)
	$(BIN)/promptstack migrate

## Benchmark the service against a bare JWT app (needs wrk); flags via BENCH_ARGS="...".
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## Benchmark the event backbone over RabbitMQ against bare aio-pika; flags via BENCH_ARGS.
.PHONY: bench-events
bench-events: $(STAMP)
	$(BIN)/python bench/events.py $(BENCH_ARGS)

## Measure Argon2 verifications (logins) per core with the configured parameters.
.PHONY: bench-logins
bench-logins: $(STAMP)
	$(BIN)/python bench/logins.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

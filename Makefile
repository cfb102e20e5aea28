# The two commands of the quick start: `make run` and `make test`.
# Everything else here is what they are made of.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# What each installs, pinned with hashes: exported from uv.lock by `make lock`.
SERVE  := $(VENV)/.installed-serve
DEV    := $(VENV)/.installed-dev

.PHONY: run test lint typecheck check-imports format migrate clean lock

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# pip checks every hash and that nothing unpinned is pulled in; the project itself goes
# in last, editable, without looking at its dependencies again.
$(SERVE): requirements/serve.txt pyproject.toml | $(BIN)/python
	@echo "Installing what serving needs into $(VENV) (a minute or so the first time)"
	$(BIN)/python -m pip install --require-hashes --progress-bar on -r requirements/serve.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

$(DEV): $(SERVE) requirements/dev.txt
	@echo "Adding the development tools to $(VENV)"
	$(BIN)/python -m pip install --require-hashes --progress-bar on -r requirements/dev.txt
	@touch $@

## Serve on http://127.0.0.1:8000 (docs at /docs) on the embedded SQLite database.
run: $(SERVE)
	$(BIN)/promptstack serve

## Lint, type-check, check the layers, and run the whole test suite.
test: $(DEV) lint typecheck check-imports
	$(BIN)/python -m pytest -n auto

## The whole suite with line coverage (threads and SQLAlchemy's greenlets followed).
.PHONY: coverage
coverage: $(DEV)
	$(BIN)/python -m pytest -n auto --cov --cov-report=term

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV)
	$(BIN)/mypy

check-imports: $(DEV)
	$(BIN)/lint-imports

format: $(DEV)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: $(SERVE)
	$(BIN)/promptstack migrate

## Benchmark users/me, a list, a write and an order against bare baselines (needs wrk); flags via BENCH_ARGS="...".
.PHONY: bench
bench: $(DEV)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## Benchmark the event backbone over RabbitMQ against bare aio-pika; flags via BENCH_ARGS.
.PHONY: bench-events
bench-events: $(DEV)
	$(BIN)/python bench/events.py $(BENCH_ARGS)

## Benchmark the shop's saga: orders settled end to end against orders accepted; flags via BENCH_ARGS.
.PHONY: bench-shop
bench-shop: $(DEV)
	$(BIN)/python bench/shop.py $(BENCH_ARGS)

## Benchmark order lists at 10^3 to 10^6 orders, and loads with and without snapshots.
.PHONY: bench-order-reads
bench-order-reads: $(DEV)
	$(BIN)/python bench/order_reads.py $(BENCH_ARGS)

## Measure Argon2 verifications (logins) per core with the configured parameters.
.PHONY: bench-logins
bench-logins: $(DEV)
	$(BIN)/python bench/logins.py $(BENCH_ARGS)

## Benchmark the LLM gateway's generate, JSON and streamed (time to first event), against bare endpoints (needs wrk); flags via BENCH_ARGS.
.PHONY: bench-llm
bench-llm: $(DEV)
	$(BIN)/python bench/llm.py $(BENCH_ARGS)

## Benchmark the document pipeline: ingestion on one core, search at 10^3 to 10^5 chunks.
.PHONY: bench-documents
bench-documents: $(DEV)
	$(BIN)/python bench/documents.py $(BENCH_ARGS)

## Resolve the dependencies again after a change to pyproject.toml, into uv.lock and the
## pinned requirement files `make run` and `make test` install from.
lock: $(DEV)
	$(BIN)/uv lock
	$(BIN)/uv export --frozen --quiet --no-emit-project --extra postgres --extra otel -o requirements/serve.txt
	$(BIN)/uv export --frozen --quiet --no-emit-project --all-extras -o requirements/dev.txt

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# Gatehouse: `make run` serves the portal, `make test` runs the whole suite. Both install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench bench-floor bench-reports bench-admission browser screenshots

$(STAMP): requirements/base.txt requirements/dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py bootstrap_demo --port $(PORT)
	@echo ""
	@echo "Gatehouse is serving on http://127.0.0.1:$(PORT)/  (Ctrl+C to stop)"
	@echo ""
	$(BIN)/python -m config.serve -b 127.0.0.1 -p $(PORT) config.asgi:application

test: install browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The README's pictures (docs/screenshots/), retaken by the browser tests that take them; a plain
# `make test` writes its screenshots to a scratch directory and leaves the checkout as it was.
screenshots: install browser
	GATEHOUSE_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/e2e/test_portal_admin.py -k "screenshots"

# The portal's browser tests drive Debian's chromium (Playwright brings no browser here).
browser:
	@command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Benchmarks (bench/README.md): simulator direct vs Gatehouse vs the LiteLLM proxy, ~7 min.
# BENCH_ARGS="--quick" for a short run, "--no-peer" without LiteLLM.
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The least CPU per streamed chunk any relay costs on this machine, per gap between chunks, ~20 s.
bench-floor: install
	$(BIN)/python bench/floor.py

# What admission and settlement cost per call, by spending-limit set-up (PostgreSQL), ~1 min.
bench-admission: install
	$(BIN)/python bench/admission.py $(BENCH_ARGS)

# One million usage rows in PostgreSQL (database gatehouse_bench_reports), report queries timed.
bench-reports: install
	$(BIN)/python bench/reports.py $(BENCH_ARGS)

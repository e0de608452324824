# Gatehouse: `make run` serves the portal, `make test` runs the whole suite. Both install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench bench-reports

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
	$(BIN)/daphne -b 127.0.0.1 -p $(PORT) config.asgi:application

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

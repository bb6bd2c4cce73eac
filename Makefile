# needs-tracker: `make run` to serve, `make test` to test. Nothing else is needed
# but Python 3.11+; PostgreSQL and Redis are used when they are there.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install run test test-embedded test-services lint format bench soak clean translations

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

run: install
	$(BIN)/needs-tracker db upgrade
	$(BIN)/needs-tracker seed
	$(BIN)/needs-tracker serve

# The suite runs twice: on the embedded default, then on PostgreSQL + Redis.
test: install test-embedded test-services

test-embedded: install
	@echo "== tests on the embedded default (SQLite, embedded broker) =="
	$(BIN)/pytest $(PYTEST_ARGS)

test-services: install
	@if $(BIN)/python -m tests.services_up; then \
		echo "== tests on PostgreSQL + Redis =="; \
		NT_TEST_BACKEND=services $(BIN)/pytest $(PYTEST_ARGS); \
	elif [ -n "$$CI" ]; then \
		echo "CI needs PostgreSQL and Redis for the second pass; see above." >&2; exit 1; \
	else \
		echo ""; \
		echo "************************************************************************"; \
		echo "* NOT RUN: the PostgreSQL + Redis pass (see above for what is missing). *"; \
		echo "* Only the embedded pass ran. Start both and run 'make test-services'. *"; \
		echo "************************************************************************"; \
	fi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every benchmark (HTTP side by side, the import, the summary), then one table of targets.
bench: install
	$(BIN)/python -m bench.all

# The bounded soak (docs/reliability.md): SOAK_ARGS="--duration 600 --machines 2".
soak: install
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# The catalogs (docs/translations.md): extract every marked string (babel.cfg), update
# the hy and ru catalogs, merge other areas' translations from translations/incoming/,
# and compile the .mo files (checked in: nothing is compiled at install).
TRANSLATIONS := service/translations
translations: install
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext --no-location --sort-output \
		--project needs-tracker --version 0.1.0 --copyright-holder "needs-tracker contributors" \
		-o $(TRANSLATIONS)/messages.pot .
	$(BIN)/pybabel update -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) --no-fuzzy-matching
	$(BIN)/python $(TRANSLATIONS)/merge_incoming.py
	$(BIN)/pybabel compile -d $(TRANSLATIONS) --statistics

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# `make run` serves config.yaml; `make test` installs everything it needs, then tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test check install dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,local]'
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

run: install
	$(BIN)/llmcache serve --config config.yaml

# The static gates: lint, formatting, and types (strict) over the product's code.
check: dev
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench
	$(BIN)/mypy app

test: dev check
	bash tests/install_test_servers.sh
	$(BIN)/python -m pytest -n auto --maxprocesses=4 --cov --cov-report=term

bench: dev
	bash tests/install_test_servers.sh
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .llmcache .testservers

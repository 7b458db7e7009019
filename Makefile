# The two commands a fresh machine needs (README.md, Quick start):
#   make up      set everything up (venv, llama-server, the model) and start the swarm
#   make check   lint, types and the whole test suite (what CI runs)
# Each installs what it needs, idempotently: a second run skips what is done.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SWARM  := $(BIN)/swarm
PYTEST_ARGS ?=

.PHONY: venv setup up down test lint types check fmt bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## setup: venv + a llama-server binary + the embedded model, cached (seconds once done)
setup: venv
	$(SWARM) pull --model smollm2:135m

## up: set up, then start the swarm on this machine's default plan (a running swarm is left as it is)
up: setup
	$(SWARM) up --if-not-running

down: venv
	$(SWARM) down

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: venv
	$(BIN)/mypy

check: lint types test

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist

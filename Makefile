# Two entry points: `make run` and `make test`. Both create or refresh .venv from pyproject.toml first
# (idempotent: pip runs again only when pyproject.toml is newer than the venv's stamp).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: run test lint typecheck unit integration venv clean bench-numeric

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

run: $(STAMP)
	$(BIN)/usp run $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Figures for the numeric core (a benchmark: prints, asserts nothing).
bench-numeric: $(STAMP)
	$(BIN)/python -m models.perf --nab ../shared/data/nab/data

clean:
	rm -rf $(VENV) .usp .pytest_cache .mypy_cache .ruff_cache

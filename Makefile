# One command to run, one to test. Both create ./.venv and install sweeplab on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test test-slow test-all lint bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: the default sweep (local Dask, local zarr) -> results/
run: $(STAMP)
	$(BIN)/python -m sweeplab.demo

## test: the fast default suite (a few minutes on 2 cores)
test: $(STAMP)
	$(BIN)/python -m pytest -q

## test-slow: the larger tier behind the `slow` marker
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow || test $$? -eq 5  # 5 = nothing selected

test-all: test test-slow

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean-venv:
	rm -rf $(VENV)

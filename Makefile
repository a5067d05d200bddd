# One command to run, one to test. Both create ./.venv and install sweeplab on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
SNAKEMAKE_ARGS ?=

.PHONY: run report demo test test-slow test-slurm test-all lint bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: the default sweep (local Dask, local zarr) -> results/*.zarr, results/figures, report
run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake $(SNAKEMAKE_ARGS)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --report results/report.html $(SNAKEMAKE_ARGS)

## demo: a ten-second tour of the sweeplab.dmf API
demo: $(STAMP)
	$(BIN)/python -m sweeplab.demo

## test: the fast default suite (a few minutes on 2 cores)
test: $(STAMP)
	$(BIN)/python -m pytest -q

## test-slow: the larger tier behind the `slow` marker
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow || test $$? -eq 5  # 5 = nothing selected

## test-slurm: workflow on a real single-node Slurm the tests start (needs root and
## `.ci/install-slurm.sh`); fails rather than skips when Slurm cannot be started
test-slurm: $(STAMP)
	SWEEPLAB_REQUIRE_SLURM=1 $(BIN)/python -m pytest -q -m slurm --durations=5

test-all: test test-slow test-slurm

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean-venv:
	rm -rf $(VENV)

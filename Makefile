# One command to run, one to test. Both create ./.venv and install sweeplab on first use:
# run/demo the `workflow` extra (Snakemake, the sweep layer, figures), the test and lint targets
# the `test` extra (every extra plus the test tools; it includes `workflow`).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
RUN_STAMP = $(VENV)/.installed-workflow
SNAKEMAKE_ARGS ?=

.PHONY: run report demo test test-slow test-slurm test-all lint bench clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# pip compiles the bytecode of what it installs, but not of an editable install's source:
# compileall does (where PYTHONDONTWRITEBYTECODE is set, every process would compile src/).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m compileall -q src
	touch $(STAMP) $(RUN_STAMP)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[workflow]'
	$(BIN)/python -m compileall -q src
	touch $(RUN_STAMP)

## run: the default sweep (local Dask, local zarr) -> results/*.zarr, results/figures, report
run: $(RUN_STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake $(SNAKEMAKE_ARGS)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --report results/report.html $(SNAKEMAKE_ARGS)

## demo: a ten-second tour of the sweeplab.dmf API
demo: $(RUN_STAMP)
	$(BIN)/python -m sweeplab.demo

# The tests run two pytest workers (and their Snakemake and Dask children) on this project's
# 2-core machines: one BLAS/OpenMP thread per process, or the workers' multithreaded BLAS calls
# oversubscribe the cores (one exact-model test took 90 s instead of 4 s).
test test-slow test-slurm: export OMP_NUM_THREADS = 1
test test-slow test-slurm: export OPENBLAS_NUM_THREADS = 1
test test-slow test-slurm: export MKL_NUM_THREADS = 1

## test: the fast default suite on 2 workers (pytest-xdist; each test file stays on one worker,
## so a file's module and session fixtures are built once). Files are handed out in collection
## order, which tests/conftest.py starts with the longest file (xdist would otherwise order
## them by their number of tests and leave the two-minute workflow file, 5 tests, for last)
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

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
	$(BIN)/snakefmt --check Snakefile workflow
	$(BIN)/python -m sweeplab.configdoc --check

clean-venv:
	rm -rf $(VENV)

# Two commands do all set-up on a fresh machine:
#   make toy    # builds .venv, runs the default pipeline (the embedded toy world) on this machine
#   make test   # builds .venv, runs the tests (incl. a small run of the toy DAG)
#   make mutants  # checks that the tests catch each mutation of the core (tests/mutations.py)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
export HF_HUB_OFFLINE ?= 1

.PHONY: setup toy smoke test mutants lint clean-results

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[workflow,gpu,dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	mkdir -p $(HOME)/.config/snakemake && ln -sfn "$(CURDIR)/profiles/slurm" $(HOME)/.config/snakemake/slurm
	touch $@

setup: $(VENV)/.installed

toy: setup
	$(BIN)/snakemake --cores $(CORES) all

smoke: setup
	$(BIN)/snakemake --cores $(CORES) all --configfile config/config.yaml config/smoke.yaml

# --durations: CI's log lists the slowest tests (where the suite's time goes)
test: setup
	$(BIN)/pytest -q -rs --durations=30

# apply each core mutation of tests/mutations.py to a scratch copy of src/ and run its tests
mutants: setup
	$(BIN)/python tests/mutations.py

lint: setup
	$(BIN)/ruff check src tests workflow benchmarks
	$(BIN)/snakemake --lint

clean-results:
	rm -rf results .snakemake

# Two commands do all set-up on a fresh machine:
#   make run    create .venv, install, run the default benchmark -> report/index.html
#   make test   create .venv if needed, install, run the tests
#   make lint   ruff (lint and format) and snakefmt, as CI runs them
#   make bench  the speed benchmark of BENCHMARK's models -> results/speed.csv
#               (make bench BENCHMARK=benchmarks/speed.yaml: ResNet-18 and DenseNet-121 too)
#   make bench-grid  train + evaluate a fixed part of BENCHMARK's grid per run and per (dataset, model, method); print the cost
#   make gpu-check   on a CUDA machine: 10-seed training of one dataset, make bench -> gpu_check.txt
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
BENCHMARK ?= benchmarks/default.yaml

# libgomp's spin-wait makes parallel torch jobs collapse on few cores; passive waiting costs nothing.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install run dry-run bench bench-grid gpu-check lint test clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[cohorts,test,slurm,federated]'
	# ACTG 175's CSV ships in the lifelines wheel; lifelines pins pandas<3, so we keep the wheel as a
	# data file (datasets/actg175.py reads it as a zip) instead of installing it.
	$(BIN)/python -m pip download --quiet --no-deps lifelines==0.30.3 -d $(VENV)/share/dpfair
	touch $@

# The DP synthesis methods (synth_aim, synth_mst) run smartnoise-synth 1.0.8, whose pins (opacus<0.15, mbi<2)
# cannot share .venv (Opacus 1.6): rule synthesize calls this environment of its own.
SYNTH_VENV ?= .venv-synth
$(SYNTH_VENV)/bin/.installed: workflow/envs/synthesis.txt
	$(PYTHON) -m venv $(SYNTH_VENV)
	$(SYNTH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SYNTH_VENV)/bin/python -m pip install --quiet -r workflow/envs/synthesis.txt
	touch $@

install: $(BIN)/.installed $(SYNTH_VENV)/bin/.installed

# config check first: a YAML syntax error is reported with its file and line (Snakemake's own message has
# neither); runlock refuses while a Snakemake runs in the folder, stops the jobs a killed run left running,
# then clears its stale lock.
run: install
	$(BIN)/dpfair config check $(BENCHMARK) > /dev/null
	$(BIN)/python -m dpfair.pipeline.runlock -- $(BIN)/snakemake --cores $(CORES) --configfile $(BENCHMARK)

# results/speed.csv by name: the speed job runs whatever the benchmark's speed.enabled (which adds it to make run)
bench: install
	$(BIN)/snakemake results/speed.csv --cores $(CORES) --configfile $(BENCHMARK) --forcerun speed

# job-seconds, training-loop seconds and overhead share of one job per run against one per (dataset, model, method)
bench-grid: install
	$(BIN)/python tools/bench_grid.py --benchmark $(BENCHMARK) --cores $(CORES) --workdir bench-grid

gpu-check: install
	bash tools/gpu_check.sh gpu_check.txt

dry-run: install
	$(BIN)/snakemake --cores $(CORES) --configfile $(BENCHMARK) -n

# the formatter and linters CI runs before the tests (configured in pyproject.toml)
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf results/prepared results/synthetic results/runs results/partial results/summary results/logs results/benchmarks results/speed.csv report/index.html .snakemake bench-grid gpu_check.txt

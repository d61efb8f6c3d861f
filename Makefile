# Two commands on a fresh machine: `make run` and `make test`. Both create .venv and install the
# pinned dependencies first (once; re-done when requirements.txt changes).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# CPU build of torch by default. On a CUDA machine, point pip at the PyTorch wheel index for your
# CUDA version, e.g. `make run TORCH_INDEX=<pytorch cuda wheel index url>`.
TORCH_INDEX ?=
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# the ephemeral Prefect server of the flow tests takes 15-40 s to start on 2 busy cores
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 180
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

BASE ?= main
HEAD ?= workspace

.PHONY: install run test lint report lock help stack-up stack-down label-studio label-studio-down

help:
	@echo "make run    - install (once) and run the whole pipeline: dvc repro"
	@echo "make test   - install (once), ruff, and the whole test suite"
	@echo "make lint   - ruff only"
	@echo "make report BASE=main - PR review report (reports/pr.md): working tree vs BASE"
	@echo "make stack-up / stack-down - the whole local loop: Prefect, worker, Label Studio, service"
	@echo "make label-studio / label-studio-down - only Label Studio (its own venv, installed once)"

$(BIN)/.installed: requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH, or make PYTHON=python3"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install --quiet torch==2.13.0 --index-url $(TORCH_INDEX),)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

install: $(BIN)/.installed

run: $(BIN)/.installed
	$(BIN)/dvc repro
	@$(BIN)/python -m commands.summary

# test files run in parallel worker processes (pytest-xdist), one file per worker at a time
PYTEST_WORKERS ?= 2

# lint first (style and a complexity limit, see pyproject.toml): CI fails on either
test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

report: $(BIN)/.installed
	$(BIN)/python -m commands.report --base $(BASE) --head $(HEAD) --out reports/pr.md

# the "day in the life" walkthrough (docs/labelling.md); logs in tmp/stack/logs
stack-up: $(BIN)/.installed
	$(BIN)/python -m commands.stack up

stack-down: $(BIN)/.installed
	$(BIN)/python -m commands.stack down

# Label Studio runs from .venv-label-studio (~1 GB, about 2 min to install once): its pins
# conflict with ours
label-studio: $(BIN)/.installed
	$(BIN)/python -m labelling.studio_server up

label-studio-down: $(BIN)/.installed
	$(BIN)/python -m labelling.studio_server down

lint: $(BIN)/.installed
	$(BIN)/ruff check .

lock:
	$(BIN)/python -m pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' > requirements.txt.new
	@echo "review requirements.txt.new, then move it over requirements.txt"

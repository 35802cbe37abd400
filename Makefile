# geozoo's single entry point.  `make demo` trains and evaluates the baseline, `make test` runs
# lint and the test suite; both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
# The default is the local CPU build; users with a GPU set e.g. TORCH_SPEC="torch==2.5.1".
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.geozoo-installed

.PHONY: env demo test test-all lint format clean

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[escnn,e3nn,offline,dev]"
	# escnn without py3nj (which needs a Fortran compiler); see docs/steerable_e3nn.md
	$(BIN)/python -m pip install --quiet --no-deps "escnn>=1.0.11"
	touch $(STAMP)

demo: env
	$(BIN)/geozoo zoo train cnn_mnist --output-dir runs/demo/cnn_mnist --force

test: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

test-all: env
	$(BIN)/python -m pytest -m ""

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: env
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) lightning_logs runs .pytest_cache .ruff_cache

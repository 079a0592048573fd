# Two entry points: `make demo` (the main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/demo

.PHONY: demo test docs lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/resdyn demo --out $(OUT)

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

docs: $(BIN)/.installed
	$(BIN)/mkdocs build --strict --site-dir site

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_spectra.py
	$(BIN)/python benchmarks/bench_stiffness.py
	$(BIN)/python benchmarks/bench_reliability.py

clean:
	rm -rf $(VENV) out build site src/*.egg-info

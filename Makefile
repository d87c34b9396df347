# Everything CI runs is `make test`; it sets up the CPU environment on a fresh machine first.
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_WAIT_POLICY ?= PASSIVE
export OMP_NUM_THREADS ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: setup test lint schema demo bench clean

setup: $(VENV)/.installed tests/node/node_modules/.installed

$(VENV)/.installed: requirements-cpu.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-cpu.txt
	touch $@

tests/node/node_modules/.installed: tests/node/package.json
	npm install --prefix tests/node --no-audit --no-fund --loglevel=error
	touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

schema: $(VENV)/.installed
	$(PY) -m tools.cog_predictors

test: setup lint
	$(PY) -m tools.cog_predictors --check
	$(PY) -m pytest -q --durations=15

demo: setup
	$(PY) -m tools.demo

bench: setup
	$(PY) benchmarks/raster.py
	$(PY) benchmarks/reconstruct.py
	$(PY) benchmarks/sparse.py
	$(PY) benchmarks/trellis.py
	$(PY) benchmarks/mvdream.py

clean:
	rm -rf $(VENV) tests/node/node_modules demo_out .pytest_cache .ruff_cache

# One entry point per task. `make test` installs everything it needs (venv, redis-server,
# bubblewrap) and runs the whole suite twice: with the Cython extensions and without them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
export MN_REQUIRE_REDIS ?= 1

.PHONY: install test test-ext test-pure lint typecheck bench proto run-example clean

$(VENV)/.installed: pyproject.toml setup.py $(wildcard mncore/_fast/*.pyx)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

system-deps:
	scripts/ensure-system-deps.sh

test: install system-deps
	$(MAKE) test-ext
	$(MAKE) test-pure

test-ext: install
	$(PY) -c "import mncore._fast as f, sys; sys.exit(0 if f.HAS_EXTENSIONS else 'Cython extensions are not built')"
	$(PY) -m pytest $(PYTEST_ARGS)

test-pure: install
	MNCORE_NO_EXTENSIONS=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check mncore server mn_sdk tests benchmarks scripts
	$(PY) -m ruff format --check mncore server mn_sdk tests benchmarks scripts
	$(PY) -m mypy

bench: install
	$(PY) benchmarks/run_all.py --json benchmarks/results/latest.json

proto: install
	$(PY) scripts/gen_proto.py

run-example: install
	$(VENV)/bin/mn run examples/prime-sweep

clean:
	rm -rf build dist *.egg-info mncore/_fast/*.c mncore/_fast/*.so .pytest_cache .mypy_cache .ruff_cache

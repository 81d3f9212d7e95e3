# `make demo`, `make test`, `make bench`: each creates .venv and installs the project on first use,
# and again whenever pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sciml demo

# Two pytest-xdist workers: most tests are single-threaded XLA compiles, so 2 cores run 2 at once.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow and not bench"

test-slow: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "slow"

bench: $(STAMP)
	$(PY) -m benchmarks

lint: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check "ruff>=0.6"
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info

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

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not bench"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow"

bench: $(STAMP)
	$(PY) -m benchmarks

lint: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check "ruff>=0.6"
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info

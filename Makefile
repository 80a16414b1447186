# Every target sets itself up: a fresh clone needs only python3.11 and network access to PyPI.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: setup demo test test-fast lint clean

$(BIN)/yotsuba: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

setup: $(BIN)/yotsuba  ## create .venv with the tested pins

demo: setup  ## the main job, offline: fake Reddit in-process, everything on embedded defaults
	$(BIN)/yotsuba demo

test: setup lint  ## the whole test suite, as CI runs it
	$(BIN)/python -m pytest

test-fast: setup  ## skip the tests marked slow
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) yotsuba-demo .pytest_cache .ruff_cache

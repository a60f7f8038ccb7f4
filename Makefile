# The README's two commands: `make run` and `make test`. Both set up .venv if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: setup setup-test setup-lint run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first and pinned: a plain `torch` requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e .
	touch $@
	@echo "memunlearn is installed in $(VENV), which is not on your PATH: run $(BIN)/memunlearn, or 'source $(BIN)/activate' first"

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test,ray]'
	touch $@

$(VENV)/.installed-lint: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[lint]'
	touch $@

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test

setup-lint: $(VENV)/.installed-lint

run: setup
	$(BIN)/memunlearn run $(ARGS)
	@echo "next: $(BIN)/memunlearn --help (or 'source $(BIN)/activate' to call plain memunlearn)"

test: setup-test
	@# tests/test_report.py opens reports in headless Chromium (Debian's package); without it those tests skip, saying why.
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium is not installed (needs root and apt-get): the browser tests in tests/test_report.py will skip"; }
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# ruff and mypy as configured in pyproject.toml ([tool.ruff], [tool.mypy]); CI runs this before the tests.
lint: setup-lint
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src/memunlearn

clean:
	rm -rf $(VENV) runs .pytest_cache

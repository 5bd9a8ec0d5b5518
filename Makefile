# Entry points: `make run` (set up and run with the embedded defaults), `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: setup system-deps run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[speech,telephony,web,dev]'
	touch $(STAMP)

setup: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

run: setup
	$(BIN)/voicebot serve

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup system-deps lint
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/ask_latency.py
	$(BIN)/python bench/calibrate.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

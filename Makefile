# Two commands do all the set-up on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1

.PHONY: install train test lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,sweeps,features,clip]"
	touch $@

install: $(VENV)/.installed

# trains and evaluates on the embedded default data (pass ARGS="decoder=... trainer.max_epochs=...")
train: install
	$(BIN)/python train.py $(ARGS)

test: install
	$(BIN)/python -m pytest $(ARGS)

# ruff: lint and formatting check (CI runs it before the tests); `make format` rewrites the files
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf outputs .cache

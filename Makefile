# Two commands for a fresh clone: `make demo` and `make test`. Both create .venv when missing and install the
# project into it, skipping the install while pyproject.toml is unchanged.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test install

# The headline command: captioning on generated scenes (minutes on a laptop CPU), then its best checkpoint tested.
demo: $(INSTALLED)
	$(BIN)/python -m apps.captioning fit
	$(BIN)/python -m apps.captioning test --ckpt_path best

test: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n auto --dist worksteal  # one test process per core

install: $(INSTALLED)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

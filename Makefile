# Two commands for a fresh machine:  `make demo`  and  `make test`.
# Both create .venv and install what they need on first use (again when pyproject.toml changes).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install lint format proto proto-check serve bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch==2.13.0 (pinned in pyproject) resolves to the CPU wheel on these machines
	$(BIN)/python -m pip install -q -e '.[train,dev]'
	@touch $@

install: $(STAMP)

## demo: the xApp with its built-in simulator, embedded buffer (no Redis) and a live table; Ctrl-C stops
demo: $(STAMP)
	$(BIN)/ms3m demo

## test: ruff + the default pytest suite (slow and benchmark tests excluded)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n auto --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## proto: regenerate the committed Python code from proto/ms3m/v1/*.proto
proto: $(STAMP)
	$(BIN)/python proto/generate.py

proto-check: $(STAMP)
	$(BIN)/python proto/generate.py --check

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info

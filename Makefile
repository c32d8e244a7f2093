# AudioGen Studio — every task a developer or CI runs. `make help` lists them.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export QT_QPA_PLATFORM ?= offscreen

.PHONY: help setup run test check lint typecheck contracts screenshot clean

help:
	@echo "make run    - set everything up, then open the app (no display: run the headless demo)"
	@echo "make test   - set everything up, then run every check and the full test suite"
	@echo "make setup  - system packages (Debian, as root), .venv, pip install -e .[dev]"
	@echo "make check  - ruff, mypy, import-linter"
	@echo "make screenshot - render the app window under Xvfb to build/screenshot.png"

setup:
	./scripts/setup.sh

run:
	./scripts/run-app.sh

lint:
	$(VENV)/bin/ruff check audiogen_studio tests benchmarks
	$(VENV)/bin/ruff format --check audiogen_studio tests benchmarks

typecheck:
	$(VENV)/bin/mypy

contracts:
	$(VENV)/bin/lint-imports

check: lint typecheck contracts

test:
	./scripts/test.sh

screenshot: setup
	mkdir -p build
	$(VENV)/bin/audiogen-studio demo --out build/demo --no-screenshot >/dev/null
	xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb \
	  $(VENV)/bin/audiogen-studio gui build/demo/prompt.wav --screenshot build/screenshot.png

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache

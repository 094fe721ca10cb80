# mmhire's two entry points. Both set up the environment first (a no-op when it is current).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint demo clean-venv

setup:
	bash tools/setup_env.sh

test: setup
	$(PY) -m ruff check mmhire tools tests configs
	$(PY) -m pytest tests $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check mmhire tools tests configs

clean-venv:
	rm -rf $(VENV)

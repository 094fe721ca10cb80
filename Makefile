# mmhire's two entry points. Both set up the environment first (a no-op when it is current).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint demo doctor clean-venv
# TASK=det (Mask R-CNN, the main job), seg (UperNet) or cls (classifier)
TASK ?= det

setup:
	bash tools/setup_env.sh

test: setup
	$(PY) -m ruff check mmhire tools tests configs
	$(PY) -m pytest tests $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check mmhire tools tests configs

demo: setup
	$(PY) tools/run_demo.py --task $(TASK)

clean-venv:
	rm -rf $(VENV)

doctor: setup
	$(PY) -m mmhire.doctor

# mmhire's two entry points. Both set up the environment first (a no-op when it is current).
VENV ?= .venv
PY := $(VENV)/bin/python
# The oldest supported stack (torch 2.1, numpy 1.26), in a venv of its own.
FLOOR_VENV ?= .venv-floor
FLOOR_PY := $(FLOOR_VENV)/bin/python
# The floor stack plus mmdeploy and its ONNX Runtime, for the deployment tests.
DEPLOY_VENV ?= .venv-deploy
DEPLOY_PY := $(DEPLOY_VENV)/bin/python

.PHONY: setup setup-floor setup-deploy test test-floor test-deploy test-oldest lint demo doctor \
	clean-venv wheelhouse
# TASK=det (Mask R-CNN, the main job), seg (UperNet) or cls (classifier)
TASK ?= det

setup:
	MMHIRE_VENV=$(VENV) bash tools/setup_env.sh default

setup-floor:
	MMHIRE_VENV=$(FLOOR_VENV) bash tools/setup_env.sh floor

setup-deploy:
	MMHIRE_VENV=$(DEPLOY_VENV) bash tools/setup_env.sh deploy

# make test and test-floor run the suite in TEST_WORKERS processes (pytest-xdist), a test module
# each at a time: as many as cores, at most 4; 0 runs it in this process.
# (nproc obeys OMP_NUM_THREADS, which the suite sets for its workers: counted without it)
TEST_WORKERS ?= $(shell n=$$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null \
	|| echo 1); [ $$n -gt 4 ] && n=4; [ $$n -lt 2 ] && n=0; echo $$n)
XDIST = -n $(TEST_WORKERS) --dist loadfile

test: setup
	$(PY) -m ruff check mmhire tools tests configs examples setup.py
	$(PY) -m pytest tests $(XDIST) $(PYTEST_ARGS)

# The tests marked `floor` on the oldest supported stack.
test-floor: setup-floor
	$(FLOOR_PY) -m pytest tests -m floor $(XDIST) $(PYTEST_ARGS)

# The tests marked `deploy` (mmdeploy's export and ONNX Runtime) on the deployment stack, in
# one process: nearly all are in one module, whose exports its tests share.
test-deploy: setup-deploy
	$(DEPLOY_PY) -m pytest tests -m deploy $(PYTEST_ARGS)

# CI's second run: the tests marked `floor` and those marked `deploy` together on the deployment
# stack (the oldest supported stack plus mmdeploy), in TEST_WORKERS processes, the deployment
# module beside the others: one set-up instead of two, and no process idle while it runs.
test-oldest: setup-deploy
	$(DEPLOY_PY) -m pytest tests -m "floor or deploy" $(XDIST) $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check mmhire tools tests configs examples setup.py

demo: setup
	$(PY) tools/run_demo.py --task $(TASK)

# Everything mmhire needs on top of an existing torch, for a GPU node without network (see
# docs/install.md). PYTHON_VERSION: the node's Python (default: this environment's).
WHEELHOUSE ?= wheelhouse
PYTHON_VERSION ?=
wheelhouse: setup
	$(PY) tools/misc/build_wheelhouse.py --out $(WHEELHOUSE) \
		$(if $(PYTHON_VERSION),--python-version $(PYTHON_VERSION))

clean-venv:
	rm -rf $(VENV) $(FLOOR_VENV) $(DEPLOY_VENV)

doctor: setup
	$(PY) -m mmhire.doctor

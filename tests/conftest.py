import importlib.metadata
import importlib.util
import os
import shutil

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO_ROOT, 'configs')

#: tools/setup_env.sh's cache folder (its compiled mmcv wheels are under wheelhouse/)
MMHIRE_CACHE = os.environ.get('MMHIRE_CACHE') or os.path.join(
    os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'mmhire')

# torch.compile's inductor caches what it compiled, keyed by the graph, its own settings and
# torch's version, under /tmp by default. Kept beside the compiled mmcv instead (the cache of
# tools/setup_env.sh), a later run of the suite compiles only graphs that changed; the tools'
# subprocesses inherit the setting. One folder per torch version; TORCHINDUCTOR_CACHE_DIR set
# by the caller wins.
os.environ.setdefault('TORCHINDUCTOR_CACHE_DIR', os.path.join(
    MMHIRE_CACHE, 'inductor', 'torch-' + importlib.metadata.version('torch')))


def share_cores_between_workers():
    """Under pytest-xdist, each worker's torch (and the tools it starts as subprocesses) uses
    its share of the cores instead of all of them: with two workers on two cores, two threads
    each made OpenMP wait on busy cores and doubled the suite's time (docs/testing.md). An
    OMP_NUM_THREADS set by the caller wins. Returns the threads per worker, or None."""
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT') or 1)
    if workers < 2 or os.environ.get('OMP_NUM_THREADS'):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    threads = max(1, (cores or 1) // workers)
    os.environ['OMP_NUM_THREADS'] = str(threads)
    import torch
    torch.set_num_threads(threads)
    return threads


share_cores_between_workers()


def load_tool(relpath):
    """Imports a script under tools/ as a module (tools/ is not a package)."""
    path = os.path.join(REPO_ROOT, 'tools', relpath)
    name = 'tool_' + relpath.replace('/', '_').replace('.py', '')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def repo_root():
    return REPO_ROOT


#: The modules that take longest (each over 100 s of the 1970 s the default suite's tests took
#: on a 2-core Intel Xeon; the deployment stack's test_mmdeploy.py, 605 s, first), longest
#: first. pytest-xdist hands the modules out in the order of collection: run last, one of them
#: kept one process busy alone at the end.
LONGEST_FIRST = ('test_mmdeploy.py', 'test_configs_train.py', 'test_train_test.py',
                 'test_deployment.py', 'test_gpu_check.py', 'test_existing_project.py',
                 'test_distributed.py', 'test_shape_generic.py', 'test_benchmark.py',
                 'test_resume.py', 'test_installed_package.py')


def module_rank(item):
    name = item.path.name
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config, items):
    """The longest modules first (a stable sort: the others keep their order, each module's
    tests theirs). Tests marked ``deploy`` need mmdeploy, which installs only on the
    deployment stack; ``make test-deploy`` and ``make test-oldest`` (CI's) run them there."""
    items.sort(key=module_rank)
    if importlib.util.find_spec('mmdeploy') is not None:
        return
    skip = pytest.mark.skip(reason='needs mmdeploy, installed only on the deployment stack: '
                            '`make test-deploy` runs these tests')
    for item in items:
        if item.get_closest_marker('deploy') is not None:
            item.add_marker(skip)


@pytest.fixture(scope='session', autouse=True)
def subprocess_temp_dir(tmp_path_factory):
    """TMPDIR for the tools the tests start, and for this process's later temporary files:
    what they leave behind (torch's ``torch.distributed.nn`` writes a folder at each import,
    torchrun one per job) goes with the suite's own temporary folder, not into /tmp."""
    import tempfile
    folder = tmp_path_factory.mktemp('tmp')
    before = os.environ.get('TMPDIR')
    os.environ['TMPDIR'] = str(folder)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    yield folder
    if before is None:
        os.environ.pop('TMPDIR', None)
    else:
        os.environ['TMPDIR'] = before
    tempfile.tempdir = None
    shutil.rmtree(folder, ignore_errors=True)


# The files of the modules whose tests failed (a setup or teardown error included).
FAILED_MODULES = set()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.failed:
        FAILED_MODULES.add(item.path)


@pytest.fixture(scope='module', autouse=True)
def module_temp_cleanup(request, tmp_path_factory):
    """Removes the folders a module's fixtures made with ``tmp_path_factory`` (venvs, wheels,
    trained work dirs: up to 2.5 GB a module) once its tests passed, instead of at the end of
    the session, so that the suite's disk use peaks at one module's per worker. A failed
    module's folders stay for a look, as pytest's ``tmp_path_retention_policy = "failed"``
    keeps them."""
    base = tmp_path_factory.getbasetemp()
    before = set(os.listdir(base))
    yield
    if request.path in FAILED_MODULES:
        return
    for name in set(os.listdir(base)) - before:
        shutil.rmtree(base / name, ignore_errors=True)

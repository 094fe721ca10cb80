import importlib.metadata
import importlib.util
import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO_ROOT, 'configs')

# torch.compile's inductor caches what it compiled, keyed by the graph, its own settings and
# torch's version, under /tmp by default. Kept beside the compiled mmcv instead (the cache of
# tools/setup_env.sh), a later run of the suite compiles only graphs that changed; the tools'
# subprocesses inherit the setting. One folder per torch version; TORCHINDUCTOR_CACHE_DIR set
# by the caller wins.
os.environ.setdefault('TORCHINDUCTOR_CACHE_DIR', os.path.join(
    os.environ.get('MMHIRE_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'mmhire'),
    'inductor', 'torch-' + importlib.metadata.version('torch')))


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


def pytest_collection_modifyitems(config, items):
    """Tests marked ``deploy`` need mmdeploy, which installs only on the deployment stack;
    ``make test-deploy`` runs them there (and CI does)."""
    if importlib.util.find_spec('mmdeploy') is not None:
        return
    skip = pytest.mark.skip(reason='needs mmdeploy, installed only on the deployment stack: '
                            '`make test-deploy` runs these tests')
    for item in items:
        if item.get_closest_marker('deploy') is not None:
            item.add_marker(skip)

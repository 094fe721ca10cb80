import importlib.util
import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO_ROOT, 'configs')


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

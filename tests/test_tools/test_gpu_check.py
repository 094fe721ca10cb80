"""The way to a GPU node without network: ``make wheelhouse`` builds the wheelhouse for this
Python, it installs offline into a fresh environment that sees only a node's packages (the
stack's torch and the scientific stack a PyTorch image has), and ``tools/gpu_check.sh
--dry-run`` runs every step of the GPU check there on the CPU."""
import glob
import importlib.metadata
import json
import os
import subprocess
import sys
import venv

import pytest
import torch
from conftest import MMHIRE_CACHE, REPO_ROOT, load_tool

#: What a PyTorch GPU image has besides torch (the H200 image: torchvision, numpy, scipy,
#: matplotlib, OpenCV, pytest, hypothesis); with everything they require.
NODE_ROOTS = ('torch', 'torchvision', 'numpy', 'scipy', 'matplotlib', 'opencv-python', 'pytest',
              'hypothesis')


canonical = load_tool('misc/build_wheelhouse.py').canonical
benchmark = load_tool('analysis_tools/benchmark.py')


def closure(roots):
    """The installed distributions ``roots`` require, with the extras they ask for."""
    from packaging.requirements import Requirement
    seen, stack = {}, [(name, ()) for name in roots]
    while stack:
        name, extras = stack.pop()
        key = (canonical(name), tuple(sorted(extras)))
        if key in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        seen[key] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or any(
                    requirement.marker.evaluate({'extra': extra}) for extra in ('', *extras)):
                stack.append((requirement.name, tuple(requirement.extras)))
    return {dist.metadata['Name']: dist for dist in seen.values()}


def node_python(root):
    """A fresh venv whose only packages are this environment's NODE_ROOTS (linked in a folder
    a .pth file adds): what a GPU node has before mmhire's wheelhouse."""
    base = root / 'node-packages'
    base.mkdir()
    for dist in closure(NODE_ROOTS).values():
        tops = {str(f).split('/')[0] for f in dist.files or []}
        for top in tops:
            source = os.path.join(str(dist.locate_file('')), top)
            if top not in ('..', '__pycache__') and os.path.exists(source) \
                    and not os.path.exists(base / top):
                os.symlink(source, base / top)
    env_dir = root / 'node-env'
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / 'bin' / 'python')
    site = subprocess.run([python, '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, 'node.pth'), 'w') as f:
        f.write(str(base) + '\n')
    return python, site


def offline_env():
    """pip with no index, no find-links and no config file of this machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('PIP_')}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX='1', PIP_DISABLE_PIP_VERSION_CHECK='1')
    return env


@pytest.fixture(scope='module')
def wheelhouse(tmp_path_factory):
    out = tmp_path_factory.mktemp('wheelhouse') / 'wheelhouse'
    built = subprocess.run(['make', '-s', 'wheelhouse', f'WHEELHOUSE={out}',
                            'PYTHON_VERSION={}.{}'.format(*sys.version_info[:2]),
                            f'VENV={os.path.dirname(os.path.dirname(sys.executable))}'],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    if built.returncode:
        # pip's warnings about each index folder that lacks a package bury its error
        lines = [line for line in (built.stdout + built.stderr).splitlines()
                 if not line.startswith('WARNING: Location ')]
        pytest.fail(f'make wheelhouse failed (exit {built.returncode}):\n' +
                    '\n'.join(lines[-60:]), pytrace=False)
    return out


@pytest.fixture
def node(tmp_path_factory):
    """A node's Python for one test: what it installs stays its own."""
    return node_python(tmp_path_factory.mktemp('node'))


def test_wheelhouse_holds_everything_but_torch(wheelhouse):
    files = sorted(os.listdir(wheelhouse))
    manifest = json.loads((wheelhouse / 'manifest.json').read_text())
    size = sum(os.path.getsize(wheelhouse / f) for f in files)
    assert size <= 30 * 2**20, size
    names = {canonical(f.split('-')[0]) for f in files if f.endswith('.whl')}
    for needed in ('mmhire', 'mmengine', 'mmcv-lite', 'mmdet', 'mmsegmentation', 'mmpretrain'):
        assert needed in names
    assert 'mmcv-2.1.0.tar.gz' in files
    assert not {n for n in names if n in ('torch', 'torchvision', 'triton', 'numpy', 'scipy')
                or n.startswith(('nvidia-', 'cuda-'))}
    # one wheel per package of the manifest, and every wheel installs on this Python
    assert names == set(manifest['packages'])
    assert manifest['python_version'] == '{}.{}'.format(*sys.version_info[:2])


def test_offline_install_into_a_node_environment(wheelhouse, node):
    """pip, offline, into the node's environment: mmhire, mmcv-lite and the libraries come
    from the wheelhouse, torch stays the node's, and a HireMLP classifier built by
    mmpretrain from mmhire's config runs."""
    python, site = node
    subprocess.run([python, '-m', 'pip', 'install', '-q', '--no-index', '--find-links',
                    str(wheelhouse), '-r', str(wheelhouse / 'requirements.txt')],
                   env=offline_env(), check=True, timeout=600)
    installed = {canonical(d.split('-')[0]) for d in os.listdir(site) if d.endswith('.dist-info')}
    assert {'mmhire', 'mmcv-lite', 'mmengine', 'mmdet', 'mmpretrain'} <= installed
    assert not installed & {'torch', 'numpy', 'scipy', 'matplotlib'}
    code = ('import torch, mmhire, mmpretrain.models\n'
            'from mmengine.config import Config\n'
            'from mmpretrain.registry import MODELS\n'
            'from mmhire.utils.paths import resolve_config\n'
            'cfg = Config.fromfile(resolve_config("hire_t_in1k"))\n'
            'cfg.model.backbone.init_cfg = None\n'
            'model = MODELS.build(cfg.model).eval()\n'
            'with torch.no_grad():\n'
            '    print(tuple(model(torch.zeros(1, 3, 224, 224), mode="tensor").shape), '
            'torch.__file__)\n')
    result = subprocess.run([python, '-c', code], capture_output=True, text=True, timeout=300,
                            cwd=str(wheelhouse))
    assert result.returncode == 0, result.stderr[-3000:]
    shape, torch_file = result.stdout.split('\n')[-2].rsplit(' ', 1)
    assert shape == '(1, 1000)'
    assert os.path.realpath(torch_file).startswith(os.path.dirname(os.path.realpath(
        torch.__file__)))


def cached_mmcv_wheel():
    """The mmcv with ops that ``make setup`` compiled for this torch and keeps in its cache."""
    folder = 'torch-{}-cp{}{}-cpu'.format(torch.__version__.replace('+', '_'),
                                          *sys.version_info[:2])
    return glob.glob(os.path.join(MMHIRE_CACHE, 'wheelhouse', folder, 'mmcv-2.1.0-*.whl'))


def test_gpu_check_dry_run(wheelhouse, node, tmp_path):
    """Every step of the GPU check on the CPU, in a node's environment that has no mmhire
    yet: the install, the CUDA tests, the benchmark, mmcv's ops (the wheel `make setup`
    compiled, in place of the node's compile) and the demo Mask R-CNN with --amp."""
    python, _ = node
    wheels = cached_mmcv_wheel()
    assert wheels, 'make setup keeps the compiled mmcv in its cache; run it first'
    out = tmp_path / 'report'
    result = subprocess.run(
        ['bash', os.path.join(REPO_ROOT, 'tools', 'gpu_check.sh'), '--dry-run', '--wheelhouse',
         str(wheelhouse), '--mmcv-wheel', wheels[0], '--budget', '1500', str(out)],
        env=dict(offline_env(), PYTHON=python), capture_output=True, text=True, timeout=1800)
    logs = {p: open(os.path.join(out, p)).read()[-2000:] for p in os.listdir(out)
            if p.endswith('.log')} if out.exists() else {}
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:] + str(logs)
    report = json.loads((out / 'report.json').read_text())
    steps = {s['step']: s for s in report['steps']}
    assert [s['status'] for s in report['steps']] == ['passed'] * 5, report['steps']
    assert steps['install']['installed'].keys() >= {'mmhire', 'mmengine', 'mmcv-lite'}
    assert not {'torch', 'numpy', 'scipy'} & steps['install']['installed'].keys()
    assert 'setuptools' in steps['install']['node_had']  # torch's, kept
    assert steps['tests']['passed'] >= 14 and steps['tests']['failed'] == 0
    assert 'tests/test_gpu.py' in steps['tests']['files']
    table = steps['benchmark']['table']
    if benchmark.cpu_has_bf16(benchmark.cpu_info()):
        assert '| hire_t | train_bf16 | 128x160 | 1 |' in table
    else:  # a CPU without bf16 instructions: the benchmark leaves bf16 out and says so
        assert '| hire_t | train_fp32 | 128x160 | 1 |' in table
        assert 'no bf16 instructions' in table
    assert steps['demo']['iterations'] == 2 and 'bbox_mAP' in steps['demo']['metrics']
    markdown = (out / 'report.md').read_text()
    assert 'Dry run on the CPU' in markdown and '| demo | passed |' in markdown


def test_gpu_check_without_gpu_stops_at_once(tmp_path, wheelhouse):
    if torch.cuda.is_available():
        pytest.skip('this machine has a GPU: the check would run')
    result = subprocess.run(['bash', os.path.join(REPO_ROOT, 'tools', 'gpu_check.sh'),
                             '--wheelhouse', str(wheelhouse), str(tmp_path / 'out')],
                            env=dict(os.environ, PYTHON=sys.executable), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert 'no CUDA device' in result.stderr and '--dry-run' in result.stderr
    assert not (tmp_path / 'out').exists()


def test_gpu_check_names_a_missing_wheelhouse(tmp_path):
    result = subprocess.run(['bash', os.path.join(REPO_ROOT, 'tools', 'gpu_check.sh'),
                             '--dry-run', '--wheelhouse', str(tmp_path / 'none'),
                             str(tmp_path / 'out')],
                            env=dict(os.environ, PYTHON=sys.executable), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert 'no wheelhouse' in result.stderr and 'make wheelhouse PYTHON_VERSION' in result.stderr


def test_gpu_check_runs_the_steps_asked_for(wheelhouse, node, tmp_path):
    """A second call for what the first had no time for: --steps picks them (the install
    always runs). PYTHON given relative to the folder it is called from, as
    ``PYTHON=.venv/bin/python`` would be."""
    python, _ = node
    out = tmp_path / 'report'
    result = subprocess.run(
        ['bash', os.path.join(REPO_ROOT, 'tools', 'gpu_check.sh'), '--dry-run', '--wheelhouse',
         str(wheelhouse), '--steps', 'demo', str(out)], cwd=str(tmp_path),
        env=dict(offline_env(), PYTHON=os.path.relpath(python, tmp_path)), capture_output=True,
        text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    steps = json.loads((out / 'report.json').read_text())['steps']
    assert [(s['step'], s['status']) for s in steps] == [('install', 'passed'),
                                                         ('demo', 'skipped')]
    assert "needs mmcv's ops" in steps[1]['why']
    bad = subprocess.run(['bash', os.path.join(REPO_ROOT, 'tools', 'gpu_check.sh'), '--dry-run',
                          '--wheelhouse', str(wheelhouse), '--steps', 'tests,train', str(out)],
                         env=dict(offline_env(), PYTHON=python), capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and 'no step train' in bad.stderr

"""mmhire installed the OpenMMLab way, with no checkout in sight: a wheel built from this tree
goes into a fresh virtual environment that sees the installed stack (torch, mmcv, mmdet, mmseg,
mmpretrain, openmim) but not this source tree, and every command runs from another folder.
The wheel must carry the configs, the tools and the model index in mmhire/.mim/, so that
`mim train/test/search mmhire`, `mim train mmdet <an mmhire config>` and `python -m mmhire`
work."""
import glob
import json
import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest
import yaml
from conftest import REPO_ROOT

# Only what the demo job needs to finish quickly: four training images, one epoch.
SHORT = ['--cfg-options', 'train_dataloader.dataset.indices=4',
         'val_dataloader.dataset.indices=2', 'test_dataloader.dataset.indices=2',
         'train_cfg.max_epochs=1']


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp('wheel')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '--disable-pip-version-check', '-q', '-w', str(out), REPO_ROOT],
                   check=True, capture_output=True, text=True, timeout=300)
    (path, ) = glob.glob(str(out / 'mmhire-*.whl'))
    return path


@pytest.fixture(scope='module')
def fresh(wheel, tmp_path_factory):
    """(python of a fresh venv holding the wheel, a working folder outside the checkout)."""
    root = tmp_path_factory.mktemp('fresh')
    venv = root / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True, timeout=300)
    python = str(venv / 'bin' / 'python')
    site = subprocess.run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()'
                           '["purelib"])'], check=True, capture_output=True, text=True).stdout
    # The stack of this environment, as a user's existing environment has it. A path listed
    # in a .pth file is added without running the .pth files inside it, so the editable
    # mmhire of this environment stays out of sight.
    with open(os.path.join(site.strip(), '_stack.pth'), 'w') as f:
        f.write(sysconfig.get_paths()['purelib'] + '\n')
    subprocess.run([python, '-m', 'pip', 'install', '--no-deps', '--no-index', '-q',
                    '--disable-pip-version-check', wheel], check=True, timeout=300)
    work = root / 'work'
    work.mkdir()
    return python, work


def run(python, work, *args, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'MMHIRE_DEVICE')}
    return subprocess.run([python, *args], cwd=work, env=env, capture_output=True, text=True,
                          timeout=timeout)


def failure(out):
    """The end of a failed command's stderr. mim re-raises its tool's failure with a traceback
    of its own, which would fill the report: the tool's own error comes before it."""
    text = out.stderr
    wrapper = text.rfind('Traceback (most recent call last)')
    if wrapper > 0 and '/mim/commands/' in text[wrapper:]:
        text = text[:wrapper]
    return text[-3000:]


def test_wheel_carries_configs_tools_and_model_index(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in glob.glob('**/*', root_dir=os.path.join(REPO_ROOT, 'configs'), recursive=True):
        if rel.endswith(('.py', '.yml')) and '__pycache__' not in rel:
            assert f'mmhire/.mim/configs/{rel}' in names, rel
    for tool in ('train.py', 'test.py', 'run_demo.py', 'dist_train.sh', 'slurm_train.sh',
                 'model_converters/hire_mlp_to_mmhire.py'):
        assert f'mmhire/.mim/tools/{tool}' in names
    assert 'mmhire/.mim/model-index.yml' in names


def test_wheel_metadata_requirements_and_extras(wheel):
    """pip installs torch (any version from 2.1), mmengine and numpy with mmhire, never mmcv
    (compiled for the user's torch; `import mmhire` checks it); the `deploy` extra brings the
    runtimes, `mim` names mmcv's range."""
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith('.dist-info/METADATA'))
        lines = archive.read(meta).decode().splitlines()
    requires = [line.split(': ', 1)[1] for line in lines if line.startswith('Requires-Dist')]
    plain = {r.split(';')[0].split('>')[0].split('<')[0].strip() for r in requires
             if 'extra ==' not in r}
    assert {'torch', 'mmengine', 'numpy'} <= plain and 'mmcv' not in plain
    deploy = {r.split('>')[0] for r in requires if 'extra == "deploy"' in r}
    assert deploy == {'onnx', 'onnxruntime', 'openvino'}
    assert any(r.startswith('mmcv') and 'extra == "mim"' in r for r in requires)


def test_imports_the_installed_copy(fresh):
    python, work = fresh
    out = run(python, work, '-c', 'import mmhire; print(mmhire.__file__)')
    assert out.returncode == 0, out.stderr
    assert REPO_ROOT not in out.stdout and '/venv/' in out.stdout
    # The `mmhire` command the wheel installs is the module entry point.
    script = os.path.join(os.path.dirname(python), 'mmhire')
    listed = subprocess.run([script, 'configs', '--paths'], cwd=work, capture_output=True,
                            text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert all('/.mim/configs/' in line for line in listed.stdout.splitlines())
    assert any(line.endswith('/cascade_mask_rcnn_hire_s_coco_ms3x.py')
               for line in listed.stdout.splitlines())


def test_mim_search_lists_every_config(fresh):
    python, work = fresh
    out = run(python, work, '-m', 'mim', 'search', 'mmhire', '--json', 'index.json')
    assert out.returncode == 0, out.stderr
    with open(work / 'index.json') as f:
        listed = set(json.load(f)['config'].values())
    configs = run(python, work, '-m', 'mmhire', 'configs').stdout.split()
    assert len(configs) >= 20
    assert listed == {f'configs/{name}.py' for name in configs}
    one = run(python, work, '-m', 'mim', 'search', 'mmhire', '--config', 'hire-mlp-tiny_in1k')
    assert 'top_1_accuracy_(paper)' in one.stdout and '79.7' in one.stdout


def test_main_job_from_the_module_entry_point(fresh):
    python, work = fresh
    out = run(python, work, '-m', 'mmhire', 'demo', '--work-dir', 'demo_run', '--pictures', '1',
              *SHORT)
    assert out.returncode == 0, failure(out)
    assert 'coco/bbox_mAP' in out.stdout
    assert os.path.isfile(work / 'demo_run' / 'det' / 'predictions.png')
    assert os.path.isfile(work / 'data' / 'demo' / 'coco' / 'annotations' /
                          'instances_val2017.json')


def test_mim_train_then_test(fresh):
    python, work = fresh
    # Uses the demo data the main job generated, or generates it.
    assert run(python, work, '-m', 'mmhire', 'make-demo-data', '--sets', 'coco').returncode == 0
    out = run(python, work, '-m', 'mim', 'train', 'mmhire', 'mask_rcnn_hire_t_coco_demo.py',
              '--work-dir', 'mim_train', *SHORT)
    assert out.returncode == 0, failure(out)
    assert '.mim/tools/train.py' in out.stdout  # the installed package's own tool ran
    checkpoint = work / 'mim_train' / 'epoch_1.pth'
    assert checkpoint.is_file()
    out = run(python, work, '-m', 'mim', 'test', 'mmhire', 'mask_rcnn_hire_t_coco_demo.py',
              '--checkpoint', str(checkpoint), '--work-dir', 'mim_test', *SHORT)
    assert out.returncode == 0, failure(out)
    assert 'coco/segm_mAP' in out.stdout + out.stderr


def test_mim_train_with_mmdet_on_an_mmhire_config(fresh):
    python, work = fresh
    assert run(python, work, '-m', 'mmhire', 'make-demo-data', '--sets', 'coco').returncode == 0
    config = run(python, work, '-c', 'from mmhire.utils.paths import resolve_config; '
                 'print(resolve_config("mask_rcnn_hire_t_coco_demo"))').stdout.strip()
    assert '/.mim/configs/demo/' in config
    out = run(python, work, '-m', 'mim', 'train', 'mmdet', config, '--work-dir', 'mmdet_train',
              *SHORT)
    assert out.returncode == 0, failure(out)
    assert 'mmdet/.mim/tools/train.py' in out.stdout
    assert (work / 'mmdet_train' / 'epoch_1.pth').is_file()


def test_unknown_config_name_lists_the_configs(fresh):
    python, work = fresh
    for command in (['train', 'mask_rcnn_hire_x_coco'], ['test', 'hire_q_in1k', 'ckpt.pth']):
        out = run(python, work, '-m', 'mmhire', *command)
        assert out.returncode == 2
        assert f"config '{command[1]}' does not exist" in out.stderr
        assert 'mask_rcnn_hire_s_coco.py' in out.stderr and 'upernet_hire_t_ade20k.py' in (
            out.stderr)
    out = run(python, work, '-m', 'mmhire', 'trian', 'x')
    assert out.returncode == 2 and "unknown command 'trian'" in out.stderr


def test_model_index_has_one_entry_per_config(fresh):
    python, work = fresh
    site = run(python, work, '-c', 'import mmhire, os; print(os.path.dirname(mmhire.__file__))'
               ).stdout.strip()
    mim_dir = os.path.join(site, '.mim')
    with open(os.path.join(mim_dir, 'model-index.yml')) as f:
        imports = yaml.safe_load(f)['Import']
    entries = []
    for rel in imports:
        with open(os.path.join(mim_dir, rel)) as f:
            entries += yaml.safe_load(f)['Models']
    configs = run(python, work, '-m', 'mmhire', 'configs').stdout.split()
    assert sorted(e['Config'] for e in entries) == sorted(f'configs/{c}.py' for c in configs)
    for entry in entries:
        assert entry['Results'] and all(r['Task'] and r['Dataset'] for r in entry['Results'])
        assert 'Weights' in entry
        name = os.path.basename(entry['Config'])
        if name.startswith(('mask_rcnn', 'cascade', 'upernet', 'sem_fpn')) and '/demo/' not in (
                entry['Config']):
            size = name.split('_hire_')[1][0]
            assert entry['Metadata']['Pretrained Backbone'].startswith(
                f'checkpoints/hire_{size}_in1k.pth')
        for result in entry['Results']:
            # Every number in the index is the paper's, and says so.
            assert all(key.endswith('(paper)') for key in result['Metrics']), entry['Name']

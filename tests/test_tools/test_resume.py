"""A training process killed with SIGKILL (after an iteration, during validation, halfway
through writing a checkpoint) and resumed with ``--resume`` ends with the same weights, bit
for bit, as a run that was never interrupted."""
import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import CONFIG_DIR, REPO_ROOT

from mmhire.datasets.demo_data import make_imagenet_demo
from mmhire.utils import safe_load

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A small Hire-MLP on the demo classification set: 12 training images, batch 4, so 3
# iterations an epoch; validation every 2 epochs; one checkpoint kept, so a lost write
# would leave nothing to resume from. drop_path and the random crops and flips draw from
# the random streams that resumption has to continue.
SMALL_CONFIG = f"""
_base_ = {os.path.join(CONFIG_DIR, 'demo', 'hire_t_in1k_demo.py')!r}
custom_imports = dict(imports=['mmhire', 'fault_injection'], allow_failed_imports=False)
model = dict(
    backbone=dict(arch=dict(_delete_=True, depths=[1, 1, 1, 1], channels=[16, 32, 48, 64],
                            mlp_ratios=[2, 2, 2, 2], region_sizes=[4, 3, 3, 2],
                            step_strides=[2, 2, 3, 2], step_dilations=[2, 2, 1, 1]),
                  drop_path_rate=0.1),
    head=dict(in_channels=64))
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False)
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False)
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=4, val_interval=2)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=4, T_max=3,
         convert_to_iter_based=True),
]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=1))
custom_hooks = [dict(type='KillHook')]
randomness = dict(seed=0, deterministic=True)
"""
# The same, as an iteration-based loop (resume fast-forwards the data by 3 or 6 batches).
ITER_CONFIG = """
_base_ = './small_epochs.py'
train_cfg = dict(_delete_=True, by_epoch=False, max_iters=12, val_interval=6)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=3),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=3, end=12, T_max=9),
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=3),
                     logger=dict(log_metric_by_epoch=False))
log_processor = dict(by_epoch=False)
"""
# The epoch config keeping its best checkpoint by a metric that improves at every
# evaluation (after epochs 2 and 4), so that the second evaluation replaces the best file.
BEST_CONFIG = """
_base_ = './small_epochs.py'
val_evaluator = [dict(type='Accuracy', topk=(1, )), dict(type='EvalCount')]
test_evaluator = val_evaluator
default_hooks = dict(checkpoint=dict(save_best='count/evals', rule='greater'))
"""
FINAL = {'small_epochs.py': 'epoch_4.pth', 'small_iters.py': 'iter_12.pth'}


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp('resume')
    make_imagenet_demo(str(root / 'data/demo/imagenet'), num_train_per_class=4,
                       num_val_per_class=2, size=48)
    (root / 'small_epochs.py').write_text(SMALL_CONFIG)
    (root / 'small_iters.py').write_text(ITER_CONFIG)
    (root / 'small_best.py').write_text(BEST_CONFIG)
    return root


def train(workspace, config, work_dir, *extra, kill=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [TESTS_DIR, REPO_ROOT, os.environ.get('PYTHONPATH', '')]))
    env.pop('MMHIRE_TEST_KILL', None)
    if kill:
        env['MMHIRE_TEST_KILL'] = kill
    return subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, 'tools', 'train.py'), config, '--work-dir',
         str(work_dir), *extra], cwd=workspace, env=env, capture_output=True, text=True,
        timeout=600)


def weights(path):
    return safe_load(str(path))['state_dict']


@pytest.fixture(scope='module')
def uninterrupted(workspace):
    finals = {}
    for config, final in FINAL.items():
        work_dir = workspace / f'uninterrupted_{config[:-3]}'
        result = train(workspace, config, work_dir)
        assert result.returncode == 0, result.stderr[-3000:]
        finals[config] = weights(work_dir / final)
    return finals


@pytest.mark.floor
@pytest.mark.parametrize('config,kill,resumes_from', [
    ('small_epochs.py', 'iter:5', 'epoch_1.pth'),   # in the middle of epoch 2
    ('small_epochs.py', 'val:1', 'epoch_2.pth'),    # during the validation after epoch 2
    ('small_epochs.py', 'save:3', 'epoch_2.pth'),   # halfway through writing epoch_3.pth
    ('small_iters.py', 'iter:5', 'iter_3.pth'),
    ('small_iters.py', 'save:2', 'iter_3.pth'),     # halfway through writing iter_6.pth
])
def test_killed_run_resumes_to_identical_weights(workspace, uninterrupted, tmp_path, config,
                                                 kill, resumes_from):
    work_dir = tmp_path / 'work'
    killed = train(workspace, config, work_dir, kill=kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]

    # last_checkpoint names a complete checkpoint; a half-written one never has its name
    last = (work_dir / 'last_checkpoint').read_text().strip()
    assert os.path.basename(last) == resumes_from
    assert 'state_dict' in safe_load(last)
    checkpoints = sorted(p.name for p in work_dir.glob('*.pth*'))
    if kill.startswith('save'):
        assert len(checkpoints) == 2 and checkpoints[0] == resumes_from
        assert checkpoints[1].endswith('.partial')
    else:
        assert checkpoints == [resumes_from]

    resumed = train(workspace, config, work_dir, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed epoch' in resumed.stdout + resumed.stderr
    assert not list(work_dir.glob('*.partial'))
    expected = uninterrupted[config]
    final = weights(work_dir / FINAL[config])
    assert final.keys() == expected.keys()
    different = [k for k in expected if not torch.equal(final[k], expected[k])]
    assert not different, f'{len(different)} tensors differ, e.g. {different[:3]}'


def test_resume_without_random_states_would_differ(workspace, uninterrupted, tmp_path):
    """The comparison above can fail: resuming from a checkpoint whose random states were
    dropped does not reproduce the uninterrupted run."""
    work_dir = tmp_path / 'work'
    assert train(workspace, 'small_epochs.py', work_dir,
                 kill='iter:5').returncode == -signal.SIGKILL
    checkpoint = work_dir / 'epoch_1.pth'
    state = torch.load(checkpoint, weights_only=False)
    del state['rng_state']
    torch.save(state, checkpoint)
    assert train(workspace, 'small_epochs.py', work_dir, '--resume').returncode == 0
    final = weights(work_dir / 'epoch_4.pth')
    expected = uninterrupted['small_epochs.py']
    assert not all(torch.equal(final[k], expected[k]) for k in expected)


def test_kill_while_replacing_the_best_checkpoint_keeps_the_previous_one(workspace, tmp_path):
    """CheckpointHook deletes the previous best checkpoint before writing the new one; the
    tools' AtomicCheckpointHook publishes the new one first."""
    work_dir = tmp_path / 'killed'
    # files written: epoch_1, epoch_2, best_count_evals_epoch_2, epoch_2 again (to record
    # the best), epoch_3, epoch_4, and the 7th, best_count_evals_epoch_4, dies halfway
    killed = train(workspace, 'small_best.py', work_dir, kill='save:7')
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    best = sorted(p.name for p in work_dir.glob('best_*'))
    assert best == ['best_count_evals_epoch_2.pth', 'best_count_evals_epoch_4.pth.partial']
    assert 'state_dict' in safe_load(str(work_dir / best[0]))

    work_dir = tmp_path / 'whole'
    assert train(workspace, 'small_best.py', work_dir).returncode == 0
    assert [p.name for p in work_dir.glob('best_*')] == ['best_count_evals_epoch_4.pth']
    assert 'state_dict' in safe_load(str(work_dir / 'best_count_evals_epoch_4.pth'))

"""Several processes for real: torchrun (tools/dist_*.sh) and a single-node SLURM cluster
(tools/slurm_*.sh), on the CPU with gloo."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
import torch
from conftest import CONFIG_DIR, REPO_ROOT

from mmhire.datasets.demo_data import make_coco_demo, make_imagenet_demo
from mmhire.utils import safe_load

TOOLS = os.path.join(REPO_ROOT, 'tools')
CLUSTER = os.path.join(TOOLS, 'misc', 'slurm_local_cluster.sh')

HOOKS_MODULE = '''
import os
import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class DumpRankWeightsHook(Hook):
    """Every rank saves its final parameters, to check that DDP kept them equal. (Batch-norm
    running statistics are buffers, not parameters: with plain BN each process keeps its own,
    and the checkpoint holds rank 0's.)"""

    def after_run(self, runner):
        model = getattr(runner.model, 'module', runner.model)
        state = {k: v.detach().cpu() for k, v in model.named_parameters()}
        torch.save(state, os.path.join(runner.work_dir,
                                       f'weights_rank{get_rank()}_of{get_world_size()}.pt'))


@HOOKS.register_module()
class CrashOnRankHook(Hook):
    """Rank `rank` dies at its second iteration (when CRASH_RANK is set)."""

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if os.environ.get('CRASH_RANK') == str(get_rank()) and runner.iter >= 1:
            raise RuntimeError('deliberate crash of rank ' + str(get_rank()))
'''


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp('dist')
    make_coco_demo(str(root / 'data/demo/coco'), num_train=8, num_val=3, size=96)
    make_imagenet_demo(str(root / 'data/demo/imagenet'), num_train_per_class=4,
                       num_val_per_class=1, size=48)
    (root / 'mmhire_test_hooks.py').write_text(HOOKS_MODULE)
    common = (
        "custom_imports = dict(imports=['mmhire', 'mmhire_test_hooks'], "
        "allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='DumpRankWeightsHook'), dict(type='CrashOnRankHook')]\n"
        "randomness = dict(seed=0)\n")
    loaders = ''.join(
        f"{loader} = dict(num_workers=0, persistent_workers=False)\n"
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'))
    (root / 'det.py').write_text(
        f"_base_ = '{CONFIG_DIR}/demo/mask_rcnn_hire_t_coco_demo.py'\n" + common + loaders +
        "train_dataloader.update(batch_size=2)\n"
        "train_cfg = dict(max_epochs=1, val_interval=1)\n"
        "default_hooks = dict(checkpoint=dict(interval=1))\n")
    (root / 'cls.py').write_text(
        f"_base_ = '{CONFIG_DIR}/demo/hire_t_in1k_demo.py'\n" + common + loaders +
        "train_dataloader.update(batch_size=2)\n"
        "train_cfg = dict(max_epochs=1, val_interval=1)\n"
        "param_scheduler = [dict(type='ConstantLR', factor=1.0)]\n"
        "default_hooks = dict(checkpoint=dict(interval=1))\n")
    return root


def run(cmd, cwd, timeout=900, **env):
    # These machines have no GPU: every launch here is a CPU launch on purpose.
    env.setdefault('MMHIRE_DEVICE', 'cpu')
    full_env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(cwd), **env)
    start = time.time()
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    return proc, time.time() - start


def logged_metrics(work_dir):
    """The metrics of the last evaluation a run logged (mmengine's json log)."""
    metrics = {}
    for dirpath, _, files in os.walk(work_dir):
        for name in files:
            if name.endswith('.json') and name[:8].isdigit():
                with open(os.path.join(dirpath, name)) as f:
                    for line in f:
                        entry = json.loads(line)
                        metrics.update({k: v for k, v in entry.items() if '/' in k})
    return metrics


def check_two_rank_training(work_dir, log):
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    rank0 = torch.load(work_dir / 'weights_rank0_of2.pt', weights_only=True)
    rank1 = torch.load(work_dir / 'weights_rank1_of2.pt', weights_only=True)
    assert rank0.keys() == rank1.keys() and len(rank0) > 100
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    checkpoints = sorted(p.name for p in work_dir.glob('*.pth'))
    assert checkpoints == ['epoch_1.pth']
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith('epoch_1.pth')
    # written once, by rank 0: a complete, loadable file
    assert 'state_dict' in safe_load(str(work_dir / 'epoch_1.pth'))


class TestTorchrun:

    def test_train_and_test_with_two_processes(self, workspace):
        work_dir = workspace / 'det_ddp'
        proc, _ = run(['bash', f'{TOOLS}/dist_train.sh', 'det.py', '2', '--work-dir',
                       str(work_dir)], workspace, PORT=str(free_port()))
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-4000:]
        check_two_rank_training(work_dir, log)

        checkpoint = str(work_dir / 'epoch_1.pth')
        one, _ = run([sys.executable, f'{TOOLS}/test.py', 'det.py', checkpoint, '--work-dir',
                      str(workspace / 'test1')], workspace)
        assert one.returncode == 0, (one.stdout + one.stderr)[-4000:]
        two, _ = run(['bash', f'{TOOLS}/dist_test.sh', 'det.py', checkpoint, '2',
                      '--work-dir', str(workspace / 'test2')], workspace,
                     PORT=str(free_port()))
        assert two.returncode == 0, (two.stdout + two.stderr)[-4000:]
        single, double = logged_metrics(workspace / 'test1'), logged_metrics(
            workspace / 'test2')
        assert 'coco/bbox_mAP' in single and 'coco/segm_mAP' in single
        assert single == double

    def test_crashed_rank_ends_the_job(self, workspace):
        proc, seconds = run(['bash', f'{TOOLS}/dist_train.sh', 'cls.py', '2', '--work-dir',
                             str(workspace / 'crash'), '--cfg-options',
                             'train_cfg.max_epochs=3'],
                            workspace, timeout=300, PORT=str(free_port()), CRASH_RANK='1')
        assert proc.returncode != 0
        assert 'deliberate crash of rank 1' in proc.stdout + proc.stderr
        assert seconds < 120


def cluster_unavailable_reason():
    if os.geteuid() != 0:
        return 'bringing up a SLURM cluster needs root'
    if not (shutil.which('srun') or shutil.which('apt-get')):
        return 'neither slurm nor apt-get is installed'
    return None


@pytest.fixture(scope='module')
def slurm(tmp_path_factory):
    reason = cluster_unavailable_reason()
    if reason:
        if os.environ.get('CI'):
            pytest.fail(f'CI must run the SLURM tests, but {reason}')
        pytest.skip(reason)
    state = tmp_path_factory.mktemp('slurm')
    env = dict(os.environ, MMHIRE_SLURM_DIR=str(state))
    up = subprocess.run(['bash', CLUSTER, 'up'], env=env, capture_output=True, text=True,
                        timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield dict(SLURM_CONF=str(state / 'slurm.conf'), MMHIRE_SLURM_DIR=str(state))
    finally:
        subprocess.run(['bash', CLUSTER, 'down'], env=env, capture_output=True, timeout=120)


class TestSlurm:

    SRUN = dict(GPUS='2', GPUS_PER_NODE='2', CPUS_PER_TASK='1')

    def test_train_and_test_through_srun(self, workspace, slurm):
        work_dir = workspace / 'det_slurm'
        proc, _ = run(['bash', f'{TOOLS}/slurm_train.sh', 'mmhire', 'mmhire_train', 'det.py',
                       str(work_dir)], workspace, MASTER_PORT=str(free_port()), **self.SRUN,
                      **slurm)
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-4000:]
        check_two_rank_training(work_dir, log)
        proc, _ = run(['bash', f'{TOOLS}/slurm_test.sh', 'mmhire', 'mmhire_test', 'det.py',
                       str(work_dir / 'epoch_1.pth'), '--work-dir',
                       str(workspace / 'slurm_test')], workspace,
                      MASTER_PORT=str(free_port()), **self.SRUN, **slurm)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        assert 'coco/bbox_mAP' in logged_metrics(workspace / 'slurm_test')

    def test_batch_job_runs_the_script_inside_its_allocation(self, workspace, slurm):
        """The README's sbatch line: the allocation holds the tasks, slurm_train.sh's srun
        runs as a step inside it; sbatch hands the job the submitting shell's environment and
        folder."""
        work_dir = workspace / 'cls_sbatch'
        wrapped = (f'GPUS=2 GPUS_PER_NODE=2 CPUS_PER_TASK=1 {TOOLS}/slurm_train.sh mmhire '
                   f'mmhire_step cls.py {work_dir}')
        proc, _ = run(['sbatch', '--wait', '-p', 'mmhire', '--job-name=mmhire_batch',
                       '--nodes=1', '--ntasks-per-node=2', '--cpus-per-task=1',
                       f'--output={workspace}/sbatch.out', '--wrap', wrapped], workspace,
                      MASTER_PORT=str(free_port()), **slurm)
        log = (workspace / 'sbatch.out').read_text() if (workspace / 'sbatch.out').exists() \
            else ''
        assert proc.returncode == 0, (proc.stdout + proc.stderr + log)[-4000:]
        check_two_rank_training(work_dir, log)

    def test_crashed_task_ends_the_job(self, workspace, slurm):
        proc, seconds = run(['bash', f'{TOOLS}/slurm_train.sh', 'mmhire', 'mmhire_crash',
                             'cls.py', str(workspace / 'slurm_crash'), '--cfg-options',
                             'train_cfg.max_epochs=3'], workspace, timeout=300,
                            MASTER_PORT=str(free_port()), CRASH_RANK='1', **self.SRUN,
                            **slurm)
        assert proc.returncode != 0
        assert 'deliberate crash of rank 1' in proc.stdout + proc.stderr
        assert seconds < 120


@pytest.fixture
def fake_srun(tmp_path):
    """An `srun` that only records its arguments, first on PATH."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    record = tmp_path / 'srun_args'
    srun = bin_dir / 'srun'
    srun.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {record}\n'
                    f'echo "MMHIRE_DEVICE=$MMHIRE_DEVICE" >> {record}\n')
    srun.chmod(0o755)
    return dict(PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}'), record


@pytest.mark.parametrize('env,wanted,unwanted', [
    (dict(GPUS='16', GPUS_PER_NODE='8', MMHIRE_DEVICE='cuda'),
     ['--gres=gpu:8', '--nodes=2', '--ntasks=16', '--ntasks-per-node=8',
      'MMHIRE_DEVICE=cuda'], []),
    (dict(MMHIRE_DEVICE='cuda'),  # the defaults: one node of 8 GPUs
     ['--gres=gpu:8', '--nodes=1', '--ntasks=8', '--ntasks-per-node=8'], []),
    (dict(GPUS='4', GPUS_PER_NODE='2', CPUS_PER_TASK='1', MMHIRE_DEVICE='cpu'),
     ['--nodes=2', '--ntasks=4', '--ntasks-per-node=2', 'MMHIRE_DEVICE=cpu'], ['--gres']),
])
def test_slurm_requests_gpus_whatever_machine_submits(workspace, fake_srun, env, wanted,
                                                      unwanted):
    """The GPUs are requested from the partition even when the submitting machine has none
    (a login node); only MMHIRE_DEVICE=cpu asks for a CPU-only job."""
    path_env, record = fake_srun
    proc, _ = run(['bash', f'{TOOLS}/slurm_train.sh', 'gpu', 'job', 'det.py', 'out'],
                  workspace, **path_env, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    args = record.read_text().splitlines()
    for arg in wanted:
        assert arg in args
    assert not [arg for arg in args for prefix in unwanted if arg.startswith(prefix)]
    assert args[-3:] == ['--work-dir=out', '--launcher=slurm',
                         f'MMHIRE_DEVICE={env["MMHIRE_DEVICE"]}']


@pytest.mark.parametrize('env,words', [
    (dict(GPUS='12', GPUS_PER_NODE='8'),
     ['GPUS=12 is not a multiple of GPUS_PER_NODE=8', 'GPUS=16']),
    (dict(GPUS='4'), ['GPUS_PER_NODE=8 is larger than GPUS=4', 'set GPUS_PER_NODE=4']),
    (dict(GPUS='two'), ['GPUS=two must be a positive whole number']),
    (dict(GPUS='8', MMHIRE_DEVICE='tpu'), ['MMHIRE_DEVICE=tpu', 'cuda', 'cpu']),
])
def test_bad_slurm_sizes_stop_before_anything_is_queued(workspace, fake_srun, env, words):
    path_env, record = fake_srun
    proc, _ = run(['bash', f'{TOOLS}/slurm_train.sh', 'gpu', 'job', 'det.py', 'out'],
                  workspace, **path_env, **env)
    assert proc.returncode == 2
    for word in words:
        assert word in proc.stderr
    assert not record.exists()


def test_gpu_launch_without_a_gpu_stops(workspace):
    """torchrun with no GPU and no MMHIRE_DEVICE=cpu: an error, not a silent CPU run."""
    proc, seconds = run(['bash', f'{TOOLS}/dist_train.sh', 'cls.py', '2', '--work-dir',
                         str(workspace / 'no_gpu')], workspace, timeout=300,
                        PORT=str(free_port()), MMHIRE_DEVICE='cuda')
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert '--launcher pytorch is a GPU launch, but torch' in log
    assert 'set MMHIRE_DEVICE=cpu' in log
    assert not list((workspace / 'no_gpu').glob('*.pth'))

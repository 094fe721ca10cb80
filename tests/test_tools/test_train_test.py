"""tools/train.py and tools/test.py on tiny demo data, for each of the three libraries."""
import json
import os
import pickle
import subprocess
import sys

import cv2
import pytest
import torch
from conftest import CONFIG_DIR, REPO_ROOT, load_tool
from demo_models import FIVE_BLOCKS

from mmhire.datasets.demo_data import make_ade_demo, make_coco_demo, make_imagenet_demo
from mmhire.utils import safe_load

train_tool = load_tool('train.py')
test_tool = load_tool('test.py')
inference_tool = load_tool('inference.py')

DET = os.path.join(CONFIG_DIR, 'demo', 'mask_rcnn_hire_t_coco_demo.py')
SEG = os.path.join(CONFIG_DIR, 'demo', 'upernet_hire_t_ade20k_demo.py')
CLS = os.path.join(CONFIG_DIR, 'demo', 'hire_t_in1k_demo.py')

NO_WORKERS = [f'{loader}.{key}' for loader in ('train_dataloader', 'val_dataloader',
                                               'test_dataloader')
              for key in ('num_workers=0', 'persistent_workers=False')]
# One iteration of training, validation at its end, a checkpoint after it.
ONE_ITER = {
    DET: ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'train_dataloader.batch_size=2',
          'default_hooks.checkpoint.interval=1'],
    SEG: ['train_cfg.max_iters=1', 'train_cfg.val_interval=1', 'train_dataloader.batch_size=2',
          'default_hooks.checkpoint.interval=1', 'param_scheduler.0.end=1',
          'param_scheduler.1.begin=1', 'param_scheduler.1.end=2'],
    CLS: ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'train_dataloader.batch_size=6',
          'default_hooks.checkpoint.interval=1', 'param_scheduler.0.end=1',
          'param_scheduler.1.begin=1', 'param_scheduler.1.end=2'],
}


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    """A working directory holding data/demo/{coco,ade,imagenet} with a few images each."""
    root = tmp_path_factory.mktemp('work')
    make_coco_demo(str(root / 'data/demo/coco'), num_train=2, num_val=2, size=96)
    make_ade_demo(str(root / 'data/demo/ade/ADEChallengeData2016'), num_train=2, num_val=2,
                  size=96)
    make_imagenet_demo(str(root / 'data/demo/imagenet'), num_train_per_class=2,
                       num_val_per_class=1, size=48)
    return root


def run_train(config, work_dir, *extra, path=None):
    """One iteration of ``config`` (or of ``path``, a config derived from it)."""
    return train_tool.main([path or config, '--work-dir', str(work_dir), '--cfg-options',
                            *ONE_ITER[config], *NO_WORKERS, *extra])


def last_checkpoint(work_dir):
    with open(os.path.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def read_scalars(work_dir):
    logs = []
    for dirpath, _, files in os.walk(work_dir):
        for name in files:
            if name == 'scalars.json':
                with open(os.path.join(dirpath, name)) as f:
                    logs += [json.loads(line) for line in f]
    return logs


@pytest.mark.floor
@pytest.mark.parametrize('config,metric', [(DET, 'coco/bbox_mAP'), (SEG, 'mIoU'),
                                           (CLS, 'accuracy/top1')])
def test_train_one_iteration_then_test(demo_root, monkeypatch, tmp_path, config, metric):
    monkeypatch.chdir(demo_root)
    work_dir = tmp_path / 'work'
    assert run_train(config, work_dir) == 0
    checkpoint = last_checkpoint(work_dir)
    assert os.path.isfile(checkpoint)
    # validation ran at the end of training and logged the metric
    assert any(metric in entry for entry in read_scalars(work_dir))

    out = tmp_path / 'results.pkl'
    show_dir = tmp_path / 'show'
    assert test_tool.main([config, checkpoint, '--work-dir', str(tmp_path / 'test'), '--out',
                           str(out), '--show-dir', str(show_dir), '--cfg-options',
                           *NO_WORKERS]) == 0
    with open(out, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == {DET: 2, SEG: 2, CLS: 3}[config]
    drawn = [f for _, _, files in os.walk(show_dir) for f in files if f.endswith(
        ('.png', '.jpg'))]
    assert len(drawn) == len(results)

    image = sorted(p for p in (demo_root / 'data/demo').rglob('*') if p.suffix in (
        '.jpg', '.png') and 'val' in str(p) and 'annotations' not in str(p))[0]
    picture = tmp_path / 'inference.png'
    assert inference_tool.main([config, checkpoint, str(image), '--out', str(picture)]) == 0
    drawn_image = cv2.imread(str(picture))
    assert drawn_image is not None and drawn_image.shape[0] >= 48


def test_resume_continues_with_saved_state(demo_root, monkeypatch, tmp_path):
    monkeypatch.chdir(demo_root)
    work_dir = tmp_path / 'work'
    assert run_train(CLS, work_dir, 'train_cfg.max_epochs=2') == 0
    first = safe_load(str(work_dir / 'epoch_1.pth'))
    full = safe_load(str(work_dir / 'epoch_2.pth'))
    os.remove(work_dir / 'epoch_2.pth')
    # Resume from epoch 1 with weights-only loading on (torch's default).
    assert run_train(CLS, work_dir, 'train_cfg.max_epochs=2', '--resume',
                     str(work_dir / 'epoch_1.pth')) == 0
    resumed = safe_load(str(work_dir / 'epoch_2.pth'))
    assert first['meta']['iter'] == 1 and resumed['meta']['iter'] == 2
    steps = [s['step'] for s in resumed['optimizer']['state'].values()]
    assert steps and all(int(s) == 2 for s in steps)  # AdamW continued from its saved state
    assert full['meta']['iter'] == 2
    # The resumed run trained on from epoch 1's weights (augmentation randomness is not part
    # of a checkpoint, so they need not equal the uninterrupted run's bit for bit).
    key = 'backbone.downsample_layers.0.conv.weight'
    assert not torch.equal(resumed['state_dict'][key], first['state_dict'][key])


def test_resume_auto_picks_latest(demo_root, monkeypatch, tmp_path):
    monkeypatch.chdir(demo_root)
    work_dir = tmp_path / 'work'
    assert run_train(CLS, work_dir) == 0
    assert run_train(CLS, work_dir, 'train_cfg.max_epochs=2', '--resume') == 0
    resumed = safe_load(str(work_dir / 'epoch_2.pth'))
    assert resumed['meta']['iter'] == 2


def test_amp_on_cpu_uses_bf16_autocast(demo_root, monkeypatch, tmp_path):
    monkeypatch.chdir(demo_root)
    assert run_train(CLS, tmp_path / 'work', '--amp') == 0
    cfg_dump = [f for f in os.listdir(tmp_path / 'work') if f.endswith('.py')]
    assert cfg_dump
    text = open(tmp_path / 'work' / cfg_dump[0]).read()
    assert 'CPUBF16OptimWrapper' in text


def test_amp_on_cpu_trains_a_detector(demo_root, monkeypatch, tmp_path):
    """Mask R-CNN with --amp on the CPU: the backbone and neck in bfloat16, the heads (whose
    NMS and RoIAlign take float32 only) in float32."""
    monkeypatch.chdir(demo_root)
    assert run_train(DET, tmp_path / 'work', '--amp') == 0
    assert os.path.exists(tmp_path / 'work' / 'epoch_1.pth')


def test_cpu_bf16_wrapper_runs_the_features_in_bf16_and_the_heads_in_float32():
    import torch
    import torch.nn as nn

    from mmhire.engine import CPUBF16OptimWrapper
    from mmhire.models import HireMLP

    class Detector(nn.Module):

        def __init__(self):
            super().__init__()
            self.backbone = HireMLP('tiny', out_indices=(0, 1, 2, 3))
            self.neck = nn.Sequential(nn.Conv2d(512, 8, 1))
            self.head = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return self.head(self.neck(self.backbone(x)[-1]))

    model = Detector()
    seen = {}
    for name in ('backbone.stages.0.0.mlp.fc1', 'neck.0', 'neck', 'head'):
        model.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, (i[0].dtype, o.dtype)))
    wrapper = CPUBF16OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        out = model(torch.randn(1, 3, 64, 64))
    assert seen['backbone.stages.0.0.mlp.fc1'][1] == torch.bfloat16
    assert seen['neck.0'][1] == torch.bfloat16
    assert seen['neck'] == (torch.float32, torch.float32)  # what the backbone gives, and takes
    assert seen['head'] == (torch.float32, torch.float32) and out.dtype == torch.float32
    # the forwards are restored: outside the context everything is float32 again
    assert 'forward' not in model.backbone.__dict__ and 'forward' not in model.neck.__dict__
    model(torch.randn(1, 3, 64, 64))
    assert seen['neck.0'][1] == torch.float32


@pytest.mark.parametrize('config,folder', [
    ('mask_rcnn_hire_t_coco.py', 'data/coco/'),
    ('upernet_hire_t_ade20k.py', 'data/ade/ADEChallengeData2016'),
    ('hire_t_in1k.py', 'data/imagenet'),
])
def test_missing_dataset_folder(tmp_path, monkeypatch, capsys, config, folder):
    monkeypatch.chdir(tmp_path)
    assert train_tool.main([os.path.join(CONFIG_DIR, config)]) == 2
    err = capsys.readouterr().err
    assert folder in err and 'does not exist' in err
    assert 'make_demo_data.py' in err and 'download' in err
    assert not (tmp_path / 'work_dirs').exists()


def test_missing_pretrained_checkpoint(demo_root, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(demo_root)
    config = tmp_path / 'pretrained_demo.py'
    config.write_text(
        f"_base_ = '{DET}'\n"
        "model = dict(backbone=dict(init_cfg=dict(_delete_=True, type='Pretrained', "
        "checkpoint='checkpoints/hire_t_in1k.pth', prefix='backbone.')))\n")
    assert train_tool.main([str(config), '--work-dir', str(tmp_path / 'work')]) == 2
    err = capsys.readouterr().err
    assert 'checkpoints/hire_t_in1k.pth' in err and 'python -m mmhire weights' in err
    assert 'init_cfg=None' in err


def test_missing_resume_checkpoint(demo_root, monkeypatch, capsys):
    monkeypatch.chdir(demo_root)
    assert train_tool.main([CLS, '--resume', 'nope.pth']) == 2
    assert "'nope.pth'" in capsys.readouterr().err


# Three training iterations, each logged on its own (no smoothing window), no checkpoint.
THREE_ITERS = {
    DET: ['train_cfg.max_epochs=1', 'train_dataloader.batch_size=1',
          'train_cfg.val_interval=100'],
    SEG: ['train_cfg.max_iters=3', 'train_dataloader.batch_size=2',
          'train_cfg.val_interval=100', 'param_scheduler.0.end=1',
          'param_scheduler.1.begin=1', 'param_scheduler.1.end=3'],
    CLS: ['train_cfg.max_epochs=1', 'train_dataloader.batch_size=2',
          'train_cfg.val_interval=100', 'param_scheduler.0.end=1',
          'param_scheduler.1.begin=1', 'param_scheduler.1.end=2'],
}


@pytest.mark.parametrize('config', [DET, SEG, CLS])
def test_same_seed_deterministic_runs_log_identical_losses(demo_root, tmp_path, config):
    """Separate processes, as users run them: with deterministic=True the tools also pin
    MKL's kernel choice, which otherwise varies with memory alignment between processes."""
    env = {k: v for k, v in os.environ.items() if k != 'MKL_CBWR'}
    losses = []
    for run in range(2):
        work_dir = tmp_path / f'run{run}'
        result = subprocess.run([
            sys.executable, os.path.join(REPO_ROOT, 'tools', 'train.py'), config,
            '--work-dir', str(work_dir), '--cfg-options', *THREE_ITERS[config], *NO_WORKERS,
            'randomness.seed=7', 'randomness.deterministic=True',
            'default_hooks.logger.interval=1', 'log_processor.window_size=1',
            'default_hooks.checkpoint.interval=100'
        ], cwd=demo_root, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        logged = [{k: v for k, v in entry.items() if k.startswith('loss')}
                  for entry in read_scalars(work_dir) if 'loss' in entry]
        assert len(logged) >= 2
        losses.append(logged)
    assert losses[0] == losses[1]


@pytest.mark.floor
@pytest.mark.parametrize('config', [DET, SEG, CLS])
def test_compile_option_compiles_the_backbone(demo_root, monkeypatch, tmp_path, config):
    """``--cfg-options compile=...`` compiles the backbone (not mmengine's whole train_step),
    in training and in testing; dynamo's own ``eager`` backend keeps the test quick (inductor's
    output is checked against eager in tests/test_models/test_backbones/test_shape_generic.py),
    and so does a backbone of five blocks (the demo config's, with fewer blocks per stage).
    """
    from torch._dynamo.utils import counters
    monkeypatch.chdir(demo_root)
    work_dir = tmp_path / 'work'
    smaller = tmp_path / os.path.basename(config)
    arch = dict(_delete_=True, **FIVE_BLOCKS)
    smaller.write_text(f'_base_ = [{config!r}]\nmodel = dict(backbone=dict(arch={arch!r}))\n')
    for run in ('train', 'test'):
        torch._dynamo.reset()
        counters.clear()
        if run == 'train':
            assert run_train(config, work_dir, 'compile.backend=eager', path=str(smaller)) == 0
        else:
            assert test_tool.main([str(smaller), last_checkpoint(work_dir), '--work-dir',
                                   str(tmp_path / 'test'), '--cfg-options', *NO_WORKERS,
                                   'compile.backend=eager']) == 0
        assert counters['stats']['unique_graphs'] >= 1, run
        assert counters['stats']['unique_graphs'] <= 4, dict(counters['stats'])


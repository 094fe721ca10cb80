"""Every config in configs/ loads and builds its model with the library it belongs to, with the
arch and channel numbers its file name says."""
import glob
import os
import re

import pytest
from conftest import CONFIG_DIR

from mmhire.models import HireMLP
from mmhire.utils.config import build_model, load_config, model_library

ARCH_OF = {'t': 'tiny', 's': 'small', 'b': 'base', 'l': 'large'}
CONFIGS = sorted(
    os.path.relpath(p, CONFIG_DIR) for p in glob.glob(os.path.join(CONFIG_DIR, '**', '*.py'),
                                                      recursive=True)
    if '_base_' not in p and os.path.relpath(p, CONFIG_DIR).split(os.sep)[0] != 'deploy')
NAME_RE = re.compile(r'^(?:.*/)?(?P<task>hire|mask_rcnn_hire|cascade_mask_rcnn_hire|upernet_hire|'
                     r'sem_fpn_hire)_(?P<arch>[tsbl])_'
                     r'(?P<data>in1k|coco|ade20k)')
LIBRARY_OF = {'in1k': 'mmpretrain', 'coco': 'mmdet', 'ade20k': 'mmseg'}


def test_there_are_configs():
    assert {'hire_t_in1k.py', 'hire_s_in1k.py', 'hire_b_in1k.py', 'hire_l_in1k.py'} <= set(
        CONFIGS)


def header_of(name):
    """The comment lines a config starts with, as one line of text."""
    words = []
    with open(os.path.join(CONFIG_DIR, name)) as f:
        for line in f:
            if not line.startswith('#'):
                break
            words += line[1:].split()
    return ' '.join(words)


BATCH_RE = re.compile(r'(\d+) (?:GPUs?|process(?:es)?) x (\d+) images = total batch (\d+)')


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_with_its_library(name):
    match = NAME_RE.match(name)
    assert match, f'{name} does not follow the naming scheme'
    cfg = load_config(os.path.join(CONFIG_DIR, name))
    assert model_library(cfg) == LIBRARY_OF[match['data']]
    assert cfg.custom_imports['imports'] == ['mmhire']
    model = build_model(cfg)
    backbone = model.backbone
    assert isinstance(backbone, HireMLP)
    assert backbone.arch_settings == HireMLP.arch_zoo[ARCH_OF[match['arch']]]
    channels = backbone.channels
    if match['data'] == 'in1k':
        assert cfg.model.head.in_channels == channels[-1]
        assert model.head.fc.in_features == channels[-1]
    elif match['data'] == 'coco':
        assert backbone.out_indices == [0, 1, 2, 3]
        assert list(cfg.model.neck.in_channels) == channels
        assert [c.in_channels for c in model.neck.lateral_convs] == channels
    elif match['task'] == 'sem_fpn_hire':
        assert backbone.out_indices == [0, 1, 2, 3]
        assert list(cfg.model.neck.in_channels) == channels
        assert [c.in_channels for c in model.neck.lateral_convs] == channels
    else:
        assert backbone.out_indices == [0, 1, 2, 3]
        assert list(cfg.model.decode_head.in_channels) == channels
        assert cfg.model.auxiliary_head.in_channels == channels[2]
        assert cfg.model.auxiliary_head.in_index == 2

    # The batch in the header comment, the dataloader and auto_scale_lr agree.
    batch = BATCH_RE.search(header_of(name))
    assert batch, f'{name}: the header comment does not state the total batch'
    procs, per_proc, total = map(int, batch.groups())
    assert per_proc == cfg.train_dataloader.batch_size
    assert total == procs * per_proc == cfg.auto_scale_lr.base_batch_size


@pytest.mark.parametrize('name,expected', [('hire_t_in1k.py', 18_041_672),
                                           ('hire_s_in1k.py', 33_113_848)])
def test_released_parameter_counts(name, expected):
    model = build_model(load_config(os.path.join(CONFIG_DIR, name)))
    assert sum(p.numel() for p in model.parameters()) == expected


def test_recipe_of_the_release():
    cfg = load_config(os.path.join(CONFIG_DIR, 'hire_t_in1k.py'))
    assert cfg.model.backbone.drop_path_rate == 0.
    assert [a['type'] for a in cfg.model.train_cfg.augments] == ['Mixup', 'CutMix']
    assert cfg.model.head.loss.label_smooth_val == 0.1
    assert cfg.train_dataloader.sampler.type == 'RepeatAugSampler'
    opt = cfg.optim_wrapper
    assert opt.optimizer.type == 'AdamW' and opt.optimizer.weight_decay == 0.05
    assert opt.paramwise_cfg.norm_decay_mult == 0. and opt.paramwise_cfg.bias_decay_mult == 0.
    warmup, cosine = cfg.param_scheduler
    assert warmup.start_factor * opt.optimizer.lr == pytest.approx(1e-6)
    assert (warmup.end, cosine.begin, cosine.end, cosine.eta_min) == (20, 20, 300, 1e-5)
    assert cfg.train_cfg.max_epochs == 310
    steps = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert 'RandAugment' in steps and 'RandomErasing' in steps
    assert cfg.train_dataloader.dataset.data_root == 'data/imagenet'
    assert load_config(os.path.join(CONFIG_DIR, 'hire_b_in1k.py')).model.backbone[
        'drop_path_rate'] == 0.2


# --- Headers: where the settings come from, and the schedule they state -------------------

SCHEDULE_RE = re.compile(r'Schedule: (\d+)(k?) (iterations|epochs)')


@pytest.mark.parametrize('name', CONFIGS)
def test_header_names_source_batch_and_schedule(name):
    header = header_of(name)
    assert 'Source: ' in header, f'{name}: the header does not say where its settings come from'
    schedule = SCHEDULE_RE.search(header)
    assert schedule, f'{name}: the header does not state the schedule'
    count = int(schedule[1]) * (1000 if schedule[2] else 1)
    cfg = load_config(os.path.join(CONFIG_DIR, name))
    if schedule[3] == 'epochs':
        assert cfg.train_cfg.get('type') != 'IterBasedTrainLoop'
        assert cfg.train_cfg.max_epochs == count
    else:
        assert cfg.train_cfg.type == 'IterBasedTrainLoop'
        assert cfg.train_cfg.max_iters == count
    # Every scheduler ends within the run it belongs to.
    # Every scheduler in the run's unit ends with the run (mmengine's `end` is exclusive; the
    # ADE20K configs end one step later to reproduce mmcv 1.x's poly values exactly).
    for scheduler in cfg.param_scheduler:
        if scheduler.get('by_epoch', True) == (schedule[3] == 'epochs'):
            assert scheduler['end'] <= count + 1, f'{name}: {scheduler} ends after the run'


def _learning_rates(cfg, steps):
    """The learning rate at iterations 0..steps-1 under the config's schedulers."""
    import torch
    from mmengine.registry import PARAM_SCHEDULERS

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))],
                                lr=cfg.optim_wrapper.optimizer.lr)
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=optimizer))
                  for s in cfg.param_scheduler]
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]['lr'])
        for scheduler in schedulers:
            scheduler.step()
    return rates


@pytest.mark.parametrize('size', 'tsb')
def test_upernet_as_released(size):
    cfg = load_config(os.path.join(CONFIG_DIR, f'upernet_hire_{size}_ade20k.py'))
    assert cfg.train_cfg.max_iters == 80_000 and cfg.train_dataloader.batch_size == 4
    opt = cfg.optim_wrapper
    assert opt.optimizer.type == 'AdamW' and opt.optimizer.lr == 1.2e-4
    assert opt.optimizer.weight_decay == 0.01 and opt.optimizer.betas == (0.9, 0.999)
    # No paramwise_cfg: norm layers decay too, as in the release.
    assert 'paramwise_cfg' not in opt and 'constructor' not in opt
    assert cfg.model.decode_head.channels == 512
    aux = cfg.model.auxiliary_head
    assert (aux.channels, aux.loss_decode.loss_weight) == (256, 0.4)
    assert cfg.model.test_cfg.mode == 'whole'
    assert [t['type'] for t in cfg.test_pipeline] == [
        'LoadImageFromFile', 'Resize', 'LoadAnnotations', 'PackSegInputs']
    if size == 's':
        assert cfg.model.backbone.drop_path_rate == 0.2
    # mmcv 1.x's poly policy with an 800-iteration linear warm-up from 1e-6, as the release
    # ran it: the warm-up scales the poly value, which counts from iteration 0.
    base = 1.2e-4
    for it, lr in enumerate(_learning_rates(cfg, 1200)):
        poly = base * (1 - it / 80_000)
        warm = 1 - (1 - it / 800) * (1 - 1e-6) if it < 800 else 1.0
        assert lr == pytest.approx(poly * warm, rel=1e-6, abs=1e-15), it


@pytest.mark.parametrize('size', 'tsb')
def test_semantic_fpn_as_released(size):
    cfg = load_config(os.path.join(CONFIG_DIR, f'sem_fpn_hire_{size}_ade20k.py'))
    assert cfg.train_cfg.max_iters == 40_000 and cfg.train_dataloader.batch_size == 4
    opt = cfg.optim_wrapper
    assert (opt.optimizer.type, opt.optimizer.lr, opt.optimizer.weight_decay) == (
        'AdamW', 2e-4, 0.05)
    assert 'paramwise_cfg' not in opt
    assert (cfg.model.neck.out_channels, cfg.model.neck.num_outs) == (256, 4)
    assert cfg.model.decode_head.type == 'FPNHead' and cfg.model.decode_head.channels == 128
    assert 'auxiliary_head' not in cfg.model or cfg.model.auxiliary_head is None
    assert cfg.model.backbone.drop_path_rate == {'t': 0.1, 's': 0.1, 'b': 0.2}[size]
    for it, lr in enumerate(_learning_rates(cfg, 500)):
        assert lr == pytest.approx(2e-4 * (1 - it / 40_000) ** 0.9, rel=1e-6), it


@pytest.mark.parametrize('size', 'tsb')
def test_cascade_mask_rcnn_recipe(size):
    cfg = load_config(os.path.join(CONFIG_DIR, f'cascade_mask_rcnn_hire_{size}_coco_ms3x.py'))
    assert cfg.model.type == 'CascadeRCNN'
    heads = cfg.model.roi_head.bbox_head
    assert len(heads) == 3 and all(h.loss_bbox.type == 'GIoULoss' for h in heads)
    assert all((h.num_shared_convs, h.num_shared_fcs) == (4, 1) for h in heads)
    assert cfg.train_cfg.max_epochs == 36
    assert cfg.param_scheduler[1].milestones == [27, 33]
    # The multi-scale training with crops: one branch resizes, the other resizes, crops and
    # resizes again.
    choice = next(t for t in cfg.train_pipeline if t['type'] == 'RandomChoice')
    assert [[t['type'] for t in branch] for branch in choice.transforms] == [
        ['RandomChoiceResize'], ['RandomChoiceResize', 'RandomCrop', 'RandomChoiceResize']]
    assert [t['type'] for t in cfg.train_dataloader.dataset.pipeline] == [
        t['type'] for t in cfg.train_pipeline]
    opt = cfg.optim_wrapper
    assert opt.type == 'AmpOptimWrapper' and 'constructor' not in opt
    assert (opt.optimizer.lr, opt.optimizer.weight_decay) == (1e-4, 0.05)
    assert opt.paramwise_cfg == dict(norm_decay_mult=0.)
    assert cfg.custom_imports['imports'] == ['mmhire']

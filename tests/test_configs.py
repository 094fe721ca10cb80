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
    if '_base_' not in p)
NAME_RE = re.compile(r'^(?:.*/)?(?P<task>hire|mask_rcnn_hire|upernet_hire)_(?P<arch>[tsbl])_'
                     r'(?P<data>in1k|coco|ade20k)')
LIBRARY_OF = {'in1k': 'mmpretrain', 'coco': 'mmdet', 'ade20k': 'mmseg'}


def test_there_are_configs():
    assert {'hire_t_in1k.py', 'hire_s_in1k.py', 'hire_b_in1k.py', 'hire_l_in1k.py'} <= set(
        CONFIGS)


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
    else:
        assert backbone.out_indices == [0, 1, 2, 3]
        assert list(cfg.model.decode_head.in_channels) == channels
        assert cfg.model.auxiliary_head.in_channels == channels[2]
        assert cfg.model.auxiliary_head.in_index == 2

    # The batch in the header comment, the dataloader and auto_scale_lr agree.
    header = open(os.path.join(CONFIG_DIR, name)).read().split('_base_')[0]
    batch = BATCH_RE.search(' '.join(header.replace('#', ' ').split()))
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

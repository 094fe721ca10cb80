"""Every config trains one iteration, as written (its model, its training pipeline, its
optimiser and schedulers), on a few demo images laid out where the config looks for the real
data set: data/coco, data/ade/ADEChallengeData2016 and data/imagenet. The backbone starts from a
classifier checkpoint at the path the config names, as a converted release file would be.

A small or base config that changes only the backbone of a tiny config trains on images a
quarter of the config's size, with a quarter of the RoIs sampled for the detectors' heads: its
tiny sibling runs the recipe at full size, and what the bigger backbone adds (its arch, its
checkpoint, the neck's input channels) depends on neither."""
import os

import pytest
import torch
from conftest import CONFIG_DIR
from test_configs import CONFIGS

from mmhire.datasets.demo_data import SHAPES, make_ade_demo, make_coco_demo, make_imagenet_demo
from mmhire.engine import build_runner, prepare_train_config
from mmhire.utils.config import build_model, load_config

# The sizes with released ImageNet weights, which the dense-prediction configs start from.
RELEASED = ('t', 's', 'b')


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('datasets')
    make_coco_demo(str(root / 'data/coco'), num_train=1, num_val=1, size=64)
    make_ade_demo(str(root / 'data/ade/ADEChallengeData2016'), num_train=2, num_val=1, size=64)
    make_imagenet_demo(str(root / 'data/imagenet'), num_train_per_class=1,
                       num_val_per_class=1, size=64)
    # ImageNet's annotation list, as data/imagenet/meta/train.txt has it: one image here.
    os.makedirs(root / 'data/imagenet/meta')
    first = sorted(os.listdir(root / 'data/imagenet/train'))[0]
    image = sorted(os.listdir(root / 'data/imagenet/train' / first))[0]
    (root / 'data/imagenet/meta/train.txt').write_text(f'{first}/{image} 0\n')
    # The converted ImageNet classifiers the dense-prediction configs start from.
    os.makedirs(root / 'checkpoints')
    for size in RELEASED:
        classifier = build_model(load_config(os.path.join(CONFIG_DIR, f'hire_{size}_in1k.py')))
        torch.save({'state_dict': classifier.state_dict()},
                   root / 'checkpoints' / f'hire_{size}_in1k.pth')
    return root


#: Image sizes in a training pipeline (mmcv's and mmdet's resizes, crops) and in mmseg's
#: data preprocessor (the padded size).
SIZE_KEYS = ('scale', 'scales', 'crop_size', 'size')


def smaller(value, factor):
    """``value`` (an (H, W) pair, or a list of them) divided by ``factor``."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
        return type(value)(v // factor for v in value)
    if isinstance(value, (list, tuple)):
        return type(value)(smaller(v, factor) for v in value)
    return value


def shrink_images(node, factor):
    """Divides every image size in ``node`` (a pipeline or a data preprocessor, nested
    transforms included) by ``factor``, in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in SIZE_KEYS:
                node[key] = smaller(value, factor)
            else:
                shrink_images(value, factor)
    elif isinstance(node, (list, tuple)):
        for item in node:
            shrink_images(item, factor)


def as_list(value):
    return value if isinstance(value, list) else [value]


def tiny_sibling(name):
    """The tiny config that ``name`` (a small or base config) only changes the backbone of, or
    None."""
    for size in ('_hire_s_', '_hire_b_'):
        if size in name and not name.startswith('hire_'):
            sibling = name.replace(size, '_hire_t_')
            return sibling if sibling in CONFIGS else None
    return None


def one_iteration(cfg):
    """Leaves the config as it is but for the length of the run and the loaders' sizes."""
    loader = cfg.train_dataloader
    # UperNet's pyramid pooling normalises 1x1 maps: batch norm needs two images there.
    loader.update(batch_size=2 if cfg.default_scope == 'mmseg' else 1, num_workers=0,
                  persistent_workers=False)
    if cfg.default_scope == 'mmdet':
        # The demo's three shapes stand in for COCO's first three classes.
        loader.dataset.metainfo = dict(classes=SHAPES)
    if cfg.train_cfg.get('type') == 'IterBasedTrainLoop':
        cfg.train_cfg.update(max_iters=1, val_interval=1000)
    else:
        cfg.train_cfg.update(max_epochs=1, val_interval=1000)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint = None


@pytest.mark.parametrize('name', [c for c in CONFIGS if not c.startswith('demo/')])
def test_config_trains_one_iteration(name, data_root, monkeypatch, tmp_path):
    monkeypatch.chdir(data_root)
    cfg = load_config(os.path.join(CONFIG_DIR, name))
    one_iteration(cfg)
    sibling = tiny_sibling(name)
    if sibling:
        tiny = load_config(os.path.join(CONFIG_DIR, sibling))
        # nothing but the backbone differs from the sibling, which trains at full size
        assert {k: v for k, v in cfg.model.items() if k != 'backbone'} == \
            {k: v for k, v in tiny.model.items() if k != 'backbone'}
        assert cfg.train_dataloader.dataset.pipeline == tiny.train_dataloader.dataset.pipeline
        shrink_images(cfg.train_dataloader.dataset.pipeline, 4)
        shrink_images(cfg.model.data_preprocessor, 4)
        for stage in as_list((cfg.model.get('train_cfg') or {}).get('rcnn', [])):
            stage.sampler.num //= 4   # RoIs sampled per image for the box and mask heads
    prepare_train_config(cfg, config_path=name, work_dir=str(tmp_path))
    runner = build_runner(cfg)
    runner.train()
    assert runner.iter == 1
    logged = runner.message_hub.get_scalar('train/loss')
    assert torch.isfinite(torch.tensor(logged.current()))
    if 'init_cfg' in cfg.model.backbone and cfg.model.backbone.init_cfg:
        # The backbone started from the checkpoint the config names.
        # One AdamW step moves a weight by at most about the learning rate (<= 2e-4 here);
        # a fresh initialisation differs by about 0.02.
        start = torch.load(cfg.model.backbone.init_cfg.checkpoint, weights_only=True)
        stem = start['state_dict']['backbone.downsample_layers.0.conv.weight']
        trained = runner.model.backbone.downsample_layers[0].conv.weight.detach()
        assert torch.allclose(trained.float(), stem, atol=5e-4)

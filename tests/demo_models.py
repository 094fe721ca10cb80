"""What several test modules share: models of a config with random weights saved as a training
saves them, the demo scenes they are served, and a shorter HireMLP-tiny for the tests that
compile it."""
import os

import cv2
import numpy as np
import torch

from mmhire.datasets.demo_data import render_scene
from mmhire.models import HireMLP
from mmhire.utils.config import build_model, load_config

#: HireMLP-tiny's stages with five blocks instead of ten (stage 2 keeps a shifted block): what
#: dynamo traces is the same kind of graph, in half the time.
FIVE_BLOCKS = dict(HireMLP.arch_zoo['tiny'], depths=[1, 1, 2, 1])


def random_checkpoint(config, path, seed=0, classes=None):
    """Saves a checkpoint of the config's model with random weights and trained-looking
    BatchNorm statistics (so that folding them matters), with the class names in its meta
    where given, and returns the model in eval mode."""
    cfg = load_config(config)
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(seed)
    model = build_model(cfg)
    model.init_weights()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.)
    meta = {'dataset_meta': {'classes': classes}} if classes else {}
    torch.save({'state_dict': model.state_dict(), 'meta': meta}, str(path))
    return model.eval()


def write_demo_scenes(folder):
    """A demo scene as the demo sets render it (128x128, PNG) and the same scene at 160x120
    (JPEG), which the demo test pipelines resize; returns their paths."""
    scene, _ = render_scene(np.random.default_rng(5), 128)
    square = os.path.join(str(folder), 'scene.png')
    wide = os.path.join(str(folder), 'scene_160x120.jpg')
    cv2.imwrite(square, scene)
    cv2.imwrite(wide, cv2.resize(scene, (160, 120)))
    return [square, wide]

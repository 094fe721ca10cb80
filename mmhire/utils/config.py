"""Loading configs and building their models with the library each config belongs to."""
from typing import Optional, Sequence

import torch.nn as nn
from mmengine.config import Config, DictAction  # noqa: F401  (DictAction re-exported)


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Reads a config file (running its ``custom_imports``) and applies ``--cfg-options``."""
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def build_model(cfg: Config) -> nn.Module:
    """Builds ``cfg.model`` in the config's ``default_scope`` (mmdet, mmseg or mmpretrain)."""
    from mmengine.registry import MODELS, init_default_scope

    init_default_scope(cfg.get('default_scope', 'mmengine'))
    return MODELS.build(cfg.model)


def model_library(cfg: Config) -> str:
    """The library a config belongs to, from its ``default_scope``."""
    return cfg.get('default_scope', 'mmengine')


__all__: Sequence[str] = ['load_config', 'build_model', 'model_library', 'DictAction']

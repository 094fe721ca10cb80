"""Loading configs and building their models with the library each config belongs to."""
import argparse
import os
from typing import Optional, Sequence

import torch.nn as nn
from mmengine.config import Config, DictAction  # noqa: F401  (DictAction re-exported)


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Reads a config file (running its ``custom_imports``) and applies ``--cfg-options``.

    ``path`` may also name one of mmhire's own configs (``mask_rcnn_hire_s_coco``), which is
    how the installed package runs them; anything else stops with the list of them.
    """
    from .paths import resolve_config

    cfg = Config.fromfile(resolve_config(path))
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


def parse_runner_args(parser: argparse.ArgumentParser, argv=None,
                      cfg_help: str = 'override config entries') -> argparse.Namespace:
    """Adds the options every runner tool shares (``--cfg-options``, ``--launcher``,
    ``--local-rank``), parses ``argv`` and exports ``LOCAL_RANK`` for the launchers."""
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help=cfg_help)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


__all__: Sequence[str] = [
    'load_config', 'build_model', 'model_library', 'DictAction', 'parse_runner_args'
]

"""The channels-last export form: HireMLP's stages on (B, H, W, C) maps in ONNX graphs.

Exported in the plain layout, every 1x1 convolution of a (B, C, H, W) map is a Conv node,
around which ONNX Runtime and OpenVINO reorder the map to their blocked layouts and back, and
every region fold is a Transpose that moves single elements. On (B, H, W, C) maps a 1x1
convolution is a matrix product on the last axis (a MatMul node, no reorder), the width fold
is a reshape and the height fold moves whole C-vectors, provided the folded channels are
ordered position-major (``k * C + c`` for position ``k`` of channel ``c``): the region MLP's
weights are read in that order, so the parameters and state dict are the same.

:class:`~mmhire.models.HireMLP` turns the form on for each stage while it is exported to
ONNX (either exporter) with its fast-path switch not ``'off'``: the stage's input is permuted
to (B, H, W, C) once and its output back; the downsampling convolutions between the stages
stay NCHW. The stage's modules are called as always, each reading :func:`is_channels_last`.
Eager PyTorch keeps the NCHW forms, which run faster there. Figures in docs/deployment.md.
"""
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn

from mmhire.utils.compat import is_compiling, is_exporting

from .switch import resolve

_active = False


def is_channels_last() -> bool:
    """Whether the HireMLP modules now running get (B, H, W, C) maps."""
    return _active


@contextmanager
def channels_last() -> Iterator[None]:
    """Runs the enclosed HireMLP modules on (B, H, W, C) maps (the caller permutes)."""
    global _active
    previous, _active = _active, True
    try:
        yield
    finally:
        _active = previous


def use_channels_last(module_mode: str = 'auto') -> bool:
    """Whether a HireMLP whose switch is ``module_mode`` runs its stages channels-last: while
    it is exported to ONNX, unless the switch is ``'off'``."""
    if is_compiling() and not is_exporting():
        return False  # torch.compile: decided before anything dynamo may not trace
    return resolve(module_mode) != 'off' and torch.onnx.is_in_onnx_export()


def per_channel(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Calls ``module``, written for (B, C, H, W) maps (a norm layer), on ``x`` in the layout
    in force: a channels-last map is permuted to it and back (an ``nn.Identity``, which the
    deploy form leaves in place of a folded norm, is called on ``x`` as it is)."""
    if not _active or isinstance(module, nn.Identity):
        return module(x)
    # (B, H, W, C) -> (B, C, H, W) -> (B, H, W, C)
    return module(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

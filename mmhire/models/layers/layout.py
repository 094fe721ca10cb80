"""The channels-last export form: HireMLP's stages on (B, H, W, C) maps in ONNX graphs.

Exported in the plain layout, every 1x1 convolution of a (B, C, H, W) map is a Conv node,
around which ONNX Runtime and OpenVINO reorder the map to their blocked layouts and back, and
every region fold is a Transpose that moves single elements. On (B, H, W, C) maps a 1x1
convolution is a matrix product on the last axis (a MatMul node, no reorder), the width fold
is a reshape and the height fold moves whole C-vectors, provided the folded channels are
ordered position-major (``k * C + c`` for position ``k`` of channel ``c``): the region MLP's
weights are read in that order, so the parameters and state dict are the same.

:class:`~mmhire.models.HireMLP`'s ``export_layout`` chooses the form of its ONNX exports
(either exporter): ``'channels_last'`` (default) permutes each stage's input to (B, H, W, C)
once and its output back, and runs the stage under a :class:`~.plan.Plan` whose
``channels_last`` is set; ``'nchw'`` exports the plain layout. The downsampling convolutions
between the stages stay NCHW, and eager PyTorch keeps the NCHW forms, which run faster there.
Figures in docs/deployment.md.

Which stages may run channels-last is decided here, from what the modules declare: a module
class sets ``channels_last_children`` to the names of its children that get NCHW maps
(possibly none), and the elementwise modules of :data:`ELEMENTWISE` take any layout. A stage
holding a module of any other kind (a user's swapped-in layer) is exported NCHW, the layout
that module was written for.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath
from mmengine.model import Sequential

from mmhire.utils.compat import is_compiling, is_exporting

from .plan import current_plan

#: The values of HireMLP's ``export_layout``.
EXPORT_LAYOUTS = ('channels_last', 'nchw')

#: Modules that work on maps of either layout as they are: containers and elementwise layers.
ELEMENTWISE = (nn.Sequential, Sequential, nn.Identity, DropPath, nn.ReLU, nn.ReLU6, nn.GELU,
               nn.SiLU, nn.LeakyReLU, nn.Hardswish, nn.Sigmoid, nn.Tanh)


def check_export_layout(layout: str) -> str:
    """Returns ``layout`` if it is one of :data:`EXPORT_LAYOUTS`, else raises naming them."""
    if layout not in EXPORT_LAYOUTS:
        raise ValueError(f'export_layout={layout!r}: choose one of '
                         f'{", ".join(map(repr, EXPORT_LAYOUTS))}')
    return layout


def exports_channels_last(layout: str) -> bool:
    """Whether a model whose ``export_layout`` is ``layout`` runs its stages channels-last
    now: while it is exported to ONNX (either exporter), with the layout
    ``'channels_last'``."""
    if is_compiling() and not is_exporting():
        return False  # torch.compile: decided before anything dynamo may not trace
    return layout == 'channels_last' and torch.onnx.is_in_onnx_export()


def declared_nchw_children(module: nn.Module) -> Optional[Tuple[str, ...]]:
    """The children of ``module`` that get NCHW maps in a channels-last stage, as the module
    declares them; ``()`` for an elementwise module; None where the module declares nothing
    (it cannot run channels-last)."""
    if type(module) in ELEMENTWISE:
        return ()
    return getattr(type(module), 'channels_last_children', None)


def runs_channels_last(stage: nn.Module) -> bool:
    """Whether every module of ``stage`` works on (B, H, W, C) maps: each declares it, or sits
    inside a child that its parent declared to get NCHW maps."""
    nchw = []
    for name, module in stage.named_modules():
        if any(f'{name}.'.startswith(prefix) for prefix in nchw):
            continue
        children = declared_nchw_children(module)
        if children is None:
            return False
        nchw.extend(f'{name}.{child}.' if name else f'{child}.' for child in children)
    return True


def per_channel(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Calls ``module``, written for (B, C, H, W) maps (a norm layer), on ``x`` in the layout
    of the plan in force: a channels-last map is permuted to it and back (an
    ``nn.Identity``, which the deploy form leaves in place of a folded norm, is called on
    ``x`` as it is)."""
    if not current_plan().channels_last or isinstance(module, nn.Identity):
        return module(x)
    # (B, H, W, C) -> (B, C, H, W) -> (B, H, W, C)
    return module(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

"""1x1 convolutions: ``nn.Conv2d`` (the plain form) or, in CPU inference, one batched matrix
product on the NCHW map (the fast form).

On an Intel Xeon, oneDNN reorders an NCHW input to a blocked layout and back around every
1x1 convolution, and on the early, large maps that costs more than the arithmetic (45-85
against 250-350 GFLOP/s for the product); on an AMD EPYC oneDNN's convolution is the faster
one. Figures in docs/benchmarks.md.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .plan import current_plan


def pointwise_bmm(x: torch.Tensor, weight: torch.Tensor,
                  bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``conv2d(x, weight, bias)`` for a 1x1 ``weight``, as ``weight (O, C) @ x[b] (C, H*W)``
    for every image b: reads and writes NCHW directly, the weight expanded, not copied."""
    B, C, H, W = x.shape
    out_channels = weight.size(0)
    # (B, O, C) @ (B, C, H*W) -> (B, O, H*W)
    out = torch.bmm(weight.reshape(out_channels, C).expand(B, -1, -1), x.reshape(B, C, H * W))
    if bias is not None:
        out.add_(bias.reshape(1, -1, 1))  # in place: no autograd on this path
    # (B, O, H*W) -> (B, O, H, W)
    return out.reshape(B, out_channels, H, W)


def position_major(weight: torch.Tensor, positions: int, dim: int) -> torch.Tensor:
    """``weight`` with its axis ``dim`` (``positions * C`` long, channel ``c * p + k`` for
    position ``k`` of channel ``c``) reordered position-major: entry ``k * C + c``."""
    if positions == 1:
        return weight
    shape = list(weight.shape)
    # (..., C*p, ...) -> (..., C, p, ...) -> (..., p, C, ...) -> (..., p*C, ...)
    split = shape[:dim] + [shape[dim] // positions, positions] + shape[dim + 1:]
    return weight.reshape(split).transpose(dim, dim + 1).reshape(shape)


class PointwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(in_channels, out_channels, 1)`` whose forward takes the fast form
    :func:`pointwise_bmm` where the plan in force says so (same parameters and state dict
    either way), and a matrix product on the last axis for the (B, H, W, C) maps of the
    channels-last export form (:mod:`.layout`).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        bias (bool): Whether the convolution has a bias. Defaults to True.
        in_fold (int): Region positions folded into the input channels (channel ``c * p +
            k`` holds position ``k`` of channel ``c``), which the channels-last form orders
            position-major. Defaults to 1 (none).
        out_fold (int): The same for the output channels. Defaults to 1.
    """

    #: Works on (B, H, W, C) maps as it is (:func:`.layout.runs_channels_last`).
    channels_last_children = ()

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True,
                 in_fold: int = 1, out_fold: int = 1, **kwargs) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias, **kwargs)
        if in_channels % in_fold or out_channels % out_fold:
            raise ValueError(f'PointwiseConv2d: in_fold={in_fold} and out_fold={out_fold} '
                             f'must divide in_channels={in_channels} and '
                             f'out_channels={out_channels}')
        self.in_fold = in_fold
        self.out_fold = out_fold

    def channels_last_params(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The (out, in) weight and the bias for channels-last maps, the folded channels
        read position-major (an export graph folds these into constants)."""
        weight = self.weight.reshape(self.out_channels, self.in_channels)
        weight = position_major(position_major(weight, self.in_fold, 1), self.out_fold, 0)
        bias = None if self.bias is None else position_major(self.bias, self.out_fold, 0)
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = current_plan()
        if plan.channels_last:
            # (B, H, W, C_in) -> (B, H, W, C_out)
            return F.linear(x, *self.channels_last_params())
        if plan.pointwise_bmm:
            return pointwise_bmm(x, self.weight, self.bias)
        return super().forward(x)

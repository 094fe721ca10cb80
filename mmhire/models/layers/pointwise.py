"""1x1 convolutions: ``nn.Conv2d`` (the plain form) or, in CPU inference, one batched matrix
product on the NCHW map (the fast form).

On an Intel Xeon, oneDNN reorders an NCHW input to a blocked layout and back around every
1x1 convolution, and on the early, large maps that costs more than the arithmetic (45-85
against 250-350 GFLOP/s for the product); on an AMD EPYC oneDNN's convolution is the faster
one. Figures in docs/benchmarks.md.
"""
from typing import Optional

import torch
import torch.nn as nn

from .switch import use_fast_form


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


class PointwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(in_channels, out_channels, 1)`` whose forward takes the fast form
    :func:`pointwise_bmm` where the fast-path switch allows it (same parameters and state
    dict either way).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        bias (bool): Whether the convolution has a bias. Defaults to True.
        fast_path (str): ``'auto'``, ``'on'`` or ``'off'``; see
            :mod:`mmhire.models.layers.switch`. Defaults to ``'auto'``.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True,
                 fast_path: str = 'auto', **kwargs) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias, **kwargs)
        self.fast_path = fast_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if use_fast_form('pointwise_bmm', x, self.fast_path):
            return pointwise_bmm(x, self.weight, self.bias)
        return super().forward(x)

"""BatchNorm folding for the deploy form: an eval-mode BatchNorm is a per-channel affine
map, which merges into the convolution beside it (one pass over each map fewer)."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from .pointwise import PointwiseConv2d

Affine = Tuple[torch.Tensor, torch.Tensor]


def bn_affine(bn: nn.Module) -> Affine:
    """Eval-mode BatchNorm as ``scale * x + shift`` per channel."""
    if not isinstance(bn, _BatchNorm) or not bn.track_running_stats:
        raise TypeError(f'switch_to_deploy folds eval-mode BatchNorm only, found '
                        f'{type(bn).__name__}; keep norm_cfg=dict(type="BN") to deploy')
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.affine:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.affine:
        shift = shift + bn.bias
    return scale, shift


@torch.no_grad()
def fold_into_conv(conv: nn.Conv2d, in_affine: Optional[Affine] = None,
                   out_affine: Optional[Affine] = None, repeat: int = 1) -> nn.Conv2d:
    """A convolution computing ``out_affine(conv(in_affine(x)))``, of the same class.

    ``in_affine`` is a per-input-channel (scale, shift) pair; with ``repeat`` > 1 each entry
    applies to ``repeat`` consecutive input channels (the folded region positions).
    """
    weight = conv.weight.detach().clone()
    bias = conv.bias.detach().clone() if conv.bias is not None else weight.new_zeros(
        weight.size(0))
    if in_affine is not None:
        scale, shift = (t.repeat_interleave(repeat) for t in in_affine)
        bias = bias + torch.einsum('oikl,i->o', weight, shift)
        weight = weight * scale.reshape(1, -1, 1, 1)
    if out_affine is not None:
        scale, shift = out_affine
        weight = weight * scale.reshape(-1, 1, 1, 1)
        bias = bias * scale + shift
    if isinstance(conv, PointwiseConv2d):
        fused = PointwiseConv2d(conv.in_channels, conv.out_channels, bias=True,
                                in_fold=conv.in_fold, out_fold=conv.out_fold,
                                device=weight.device, dtype=weight.dtype)
    else:
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                          conv.padding, conv.dilation, conv.groups, bias=True,
                          device=weight.device, dtype=weight.dtype)
    fused.weight.copy_(weight)
    fused.bias.copy_(bias)
    return fused

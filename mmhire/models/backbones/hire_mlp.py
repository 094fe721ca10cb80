"""Hire-MLP: Vision MLP via Hierarchical Rearrangement (Guo et al., CVPR 2022).

The building blocks come first, bottom-up; the registered :class:`HireMLP` backbone is last.
"""
import copy
import re
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule, build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule, Sequential
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from mmhire.utils.checkpoint import CheckpointError, shape_mismatches
from mmhire.utils.compat import autocast_dtype, is_compiling

#: Smallest input side the backbone accepts: at 32 pixels the last stage is 1x1.
MIN_INPUT_SIZE = 32


def _traced() -> bool:
    """Whether the forward pass is being traced (ONNX export) or compiled: those record the
    plain operators, without the custom autograd functions and CPU-only shortcuts."""
    return torch.jit.is_tracing() or is_compiling()


def _tokens_last(x: torch.Tensor) -> bool:
    """Whether ``x`` (B, C, H, W) is stored channels-last, i.e. as (B, H, W, C) tokens, and
    not also contiguous in the usual layout (a 1x1 map is both: it takes the NCHW paths)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _shift_pad_index(length: int, region_size: int, step: int) -> List[int]:
    """Source position of each position of the shifted, wrap-padded sequence.

    Position ``i`` of the result holds element ``((i mod length) - step) mod length`` of the
    input: a circular shift by ``+step`` followed by a circular pad to a whole number of
    regions, as many times around as needed, so any ``length`` works.
    """
    padded = -(-length // region_size) * region_size
    return [(i % length - step) % length for i in range(padded)]


def fold_index(length: int, region_size: int, step: int) -> torch.Tensor:
    """One gather that shifts, wrap-pads and groups regions, region position first.

    Gathering ``x`` (B, C, L, *) along L with this index gives (B, C, p * L/p, *) ordered as
    (k, g) for position k of region g, which *is* (B, C*p, L/p, *) with channel ``c*p + k``:
    the inner-region rearrangement costs no copy beyond the gather. Computed in Python, so
    that tracing (ONNX export) records it as a constant.
    """
    source = _shift_pad_index(length, region_size, step)
    groups = len(source) // region_size
    return torch.tensor([source[g * region_size + k] for k in range(region_size)
                         for g in range(groups)], dtype=torch.long)


def unfold_index(length: int, region_size: int, step: int) -> torch.Tensor:
    """The gather that undoes :func:`fold_index` for the output: position ``i`` takes padded
    position ``r = (i + step) mod length``, which sits at ``(r mod p) * L/p + r // p`` of the
    region-position-first layout; the padding is dropped."""
    groups = -(-length // region_size)
    rows = [(i + step) % length for i in range(length)]
    return torch.tensor([(r % region_size) * groups + r // region_size for r in rows],
                        dtype=torch.long)


def _weight_grad(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``sum_b grad[b] @ x[b]^T`` for grad (B, O, N) and x (B, C, N).

    One batched product writes B partial (O, C) results and sums them, which is the fast way
    while the maps are large; when ``N < O*C / (O+C)`` those partials are bigger than the
    inputs (the late stages: 4x faster at 7x7 maps on the CPU), so the products accumulate
    into one (O, C) result instead.
    """
    B, out_channels, N = grad.shape
    in_channels = x.size(1)
    if N * (out_channels + in_channels) >= out_channels * in_channels:
        return torch.bmm(grad, x.transpose(1, 2)).sum(0)
    out = torch.mm(grad[0], x[0].t())
    for b in range(1, B):
        out.addmm_(grad[b], x[b].t())
    return out


class _PointwiseFunction(torch.autograd.Function):
    """``weight @ x[b] + bias`` for every image b of a (B, C, H, W) map, with the weight
    gradient of :func:`_weight_grad`. The output is a tensor of its own, not a view, so the
    in-place residual add after it costs autograd no copy. Under autocast, the products run
    in the autocast dtype, as the plain operators would, and the gradients come back in the
    inputs' dtypes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor,
                bias: Optional[torch.Tensor]) -> torch.Tensor:
        B, C, H, W = x.shape
        dtype = autocast_dtype(x.device.type)
        if dtype is not None:
            x_, weight_ = x.to(dtype), weight.to(dtype)
        else:
            x_, weight_ = x, weight
        ctx.save_for_backward(x_, weight_)
        ctx.dtypes = (x.dtype, weight.dtype)
        ctx.has_bias = bias is not None
        out = x_.new_empty(B, weight.size(0), H, W)
        flat = out.view(B, weight.size(0), H * W)
        torch.bmm(weight_.expand(B, -1, -1), x_.reshape(B, C, H * W), out=flat)
        if bias is not None:
            flat.add_(bias.reshape(1, -1, 1).to(out.dtype))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        B, C, H, W = x.shape
        grad = grad.to(x.dtype).reshape(B, -1, H * W)
        x = x.reshape(B, C, H * W)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.bmm(weight.t().expand(B, -1, -1), grad).to(ctx.dtypes[0])
            grad_x = grad_x.reshape(B, C, H, W)
        if ctx.needs_input_grad[1]:
            grad_weight = _weight_grad(grad, x).to(ctx.dtypes[1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(dim=(0, 2)).to(ctx.dtypes[1])
        return grad_x, grad_weight, grad_bias


class PointwiseConv2d(nn.Conv2d):
    """A 1x1 convolution computed as one batched matrix product on the NCHW map.

    On the CPU, oneDNN converts NCHW inputs to a blocked layout and back around every
    convolution, which for the early, large maps costs more than the arithmetic;
    ``weight (O, C) @ x (B, C, H*W)`` reads and writes NCHW directly. A channels-last input
    (the layout :class:`HireMLP` trains in) is a (B*H*W, C) matrix instead, and the output is
    channels-last too. Same parameters and state dict as ``nn.Conv2d(C, O, 1)``.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, **kwargs):
        super().__init__(in_channels, out_channels, 1, bias=bias, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        weight = self.weight.reshape(self.out_channels, C)
        if _tokens_last(x):
            # one (B*H*W, C) @ (C, O) product over the whole batch; channels-last out
            return F.linear(x.permute(0, 2, 3, 1), weight, self.bias).permute(0, 3, 1, 2)
        if torch.is_grad_enabled() and not _traced():
            return _PointwiseFunction.apply(x, weight, self.bias)
        # (B, O, C) @ (B, C, H*W) -> (B, O, H*W); the weight is expanded, not copied
        out = torch.bmm(weight.expand(B, -1, -1), x.reshape(B, C, H * W))
        if self.bias is not None:
            # in place: bmm's backward needs its inputs, not its output, and reusing the
            # buffer saves a large allocation (page faults on the CPU)
            out.add_(self.bias.reshape(1, -1, 1).to(out.dtype))
        return out.reshape(B, self.out_channels, H, W)


def _bn_affine(bn: nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
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
def _fold_into_conv(conv: nn.Conv2d, in_affine=None, out_affine=None,
                    repeat: int = 1) -> nn.Conv2d:
    """A 1x1 (or any) convolution computing ``out_affine(conv(in_affine(x)))``.

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
                                device=weight.device, dtype=weight.dtype)
    else:
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                          conv.padding, conv.dilation, conv.groups, bias=True,
                          device=weight.device, dtype=weight.dtype)
    fused.weight.copy_(weight)
    fused.bias.copy_(bias)
    return fused


class RegionMLP(BaseModule):
    """Inner-region rearrangement along one spatial axis, with the cross-region shift.

    The feature map is shifted circularly by ``step`` along the axis, wrap-padded to a multiple
    of ``region_size``, and each run of ``region_size`` consecutive positions is folded into
    the channels (channel ``c * p + k`` holds position ``k``), where a two-layer MLP (1x1
    convolutions) mixes them. The result is unfolded, cropped and shifted back.

    Shift, pad and fold are one ``index_select`` (:func:`fold_index`), and unfold, crop and
    shift back are another (:func:`unfold_index`). The width branch works on the transposed
    map, so that its gathers, like the height branch's, move whole rows. A channels-last
    input (training) takes :meth:`_forward_tokens`, which gathers whole tokens instead.

    Args:
        channels (int): Number of input and output channels ``C``.
        region_size (int): Positions per region ``p``.
        step (int): Cross-region shift ``s``; 0 disables it.
        axis (str): ``'h'`` for the height axis or ``'w'`` for the width axis.
        norm_cfg (dict): Config of the norm layer after the first MLP layer.
            Defaults to ``dict(type='BN')``.
        act_cfg (dict): Config of the activation between the MLP layers.
            Defaults to ``dict(type='ReLU')``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 channels: int,
                 region_size: int,
                 step: int,
                 axis: str,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if axis not in ('h', 'w'):
            raise ValueError(f"RegionMLP: axis must be 'h' or 'w', got {axis!r}")
        self.channels = channels
        self.region_size = region_size
        self.step = step
        self.axis = axis
        hidden = channels // 2
        self.fc1 = PointwiseConv2d(channels * region_size, hidden, bias=False)
        self.norm = build_norm_layer(norm_cfg, hidden)[1]
        self.act = build_activation_layer(act_cfg)
        self.fc2 = PointwiseConv2d(hidden, channels * region_size, bias=True)
        self._indices: Dict[Tuple[str, int, torch.device], object] = {}

    def _cached(self, kind: str, length: int, device: torch.device, build):
        """``build()``'s index tensors for this kind and length, kept across calls."""
        key = (kind, length, device)
        if key not in self._indices:
            # never an inference-mode tensor, which autograd refuses
            with torch.inference_mode(False):
                self._indices[key] = build()
        return self._indices[key]

    def _gathers(self, length: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        return self._cached('nchw', length, device,
                            lambda: self._build_gathers(length, device))

    def _build_gathers(self, length: int,
                       device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        return (
            fold_index(length, self.region_size, self.step).to(device),
            unfold_index(length, self.region_size, self.step).to(device))

    def _token_gathers(self, height: int, width: int, device: torch.device
                       ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """The fold and unfold gathers of the channels-last path, over the H*W tokens.

        Fold: the rows of the result are the regions, each holding its ``p`` tokens in turn
        (shifted and wrap-padded as in :func:`fold_index`). Unfold: token ``(i, j)`` takes
        the position of shifted position ``(i + step) mod H`` (or ``j``) in those rows. None
        where a gather would be the identity (width regions, no shift, W a multiple of p).
        Built per call from the cached 1-D source positions, so that many input sizes cost
        only those small tables.
        """
        p, step = self.region_size, self.step
        length, other = (height, width) if self.axis == 'h' else (width, height)
        if self.axis == 'w' and step == 0 and width % p == 0:
            return None, None
        source = self._sources(length, device)
        groups = source.numel() // p
        across = torch.arange(other, device=device)
        shifted = (torch.arange(length, device=device) + step) % length
        if self.axis == 'h':
            # rows (g, j), tokens k within a row: source row g*p + k, column j
            fold = source.reshape(groups, 1, p) * width + across.reshape(1, width, 1)
            # token (i, j) sits at row (r // p, j), place r mod p, for r = (i + step) mod H
            unfold = ((shifted // p) * (width * p) + shifted % p).reshape(
                height, 1) + across.reshape(1, width) * p
        else:
            # rows (i, g), tokens k within a row: row i, source column g*p + k
            fold = across.reshape(height, 1) * width + source.reshape(1, groups * p)
            # token (i, j) sits at place (j + step) mod W of row i's groups*p tokens
            unfold = across.reshape(height, 1) * (groups * p) + shifted.reshape(1, width)
        return fold.reshape(-1), unfold.reshape(-1)

    def _sources(self, length: int, device: torch.device) -> torch.Tensor:
        return self._cached('sources', length, device, lambda: torch.tensor(
            _shift_pad_index(length, self.region_size, self.step), device=device))

    def _forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The channels-last form: every 1x1 convolution is one matrix product over the
        whole batch, with the region positions folded next to the channels (position-major:
        column ``k*C + c``), so the convolutions' weights are reordered to match."""
        B, C, H, W = x.shape
        p = self.region_size
        fold, unfold = self._token_gathers(H, W, x.device)
        tokens = x.permute(0, 2, 3, 1).reshape(B, H * W, C)
        if fold is not None:
            tokens = tokens.index_select(1, fold)
        rows = tokens.reshape(-1, p * C)
        hidden = self.fc1.out_channels
        # column c*p + k of the convolution weight -> column k*C + c
        w1 = self.fc1.weight.reshape(hidden, C, p).transpose(1, 2).reshape(hidden, p * C)
        y = F.linear(rows, w1, self.fc1.bias)
        # (rows, hidden) as a channels-last map of B images for the norm layer
        grid = (-(-H // p), W) if self.axis == 'h' else (H, -(-W // p))
        y = y.reshape(B, *grid, hidden).permute(0, 3, 1, 2)
        y = self.act(self.norm(y)).permute(0, 2, 3, 1).reshape(-1, hidden)
        w2 = self.fc2.weight.reshape(C, p, hidden).transpose(0, 1).reshape(p * C, hidden)
        b2 = self.fc2.bias.reshape(C, p).t().reshape(-1)
        tokens = F.linear(y, w2, b2).reshape(B, -1, C)
        if unfold is not None:
            tokens = tokens.index_select(1, unfold)
        return tokens.reshape(B, H, W, C).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _tokens_last(x):
            return self._forward_tokens(x)
        if self.axis == 'w':
            # (B, C, H, W) -> (B, C, W, H), copied: gathering rows of the transposed view
            # reads memory with a stride and costs more than the copy (5.0 vs 1.8 ms on a
            # 16 x 64 x 56 x 56 map)
            x = x.transpose(2, 3).contiguous()
        B, C, L, M = x.shape
        p = self.region_size
        # traced: built afresh, so that the trace records them as constants
        fold, unfold = (self._build_gathers(L, x.device) if _traced() else
                        self._gathers(L, x.device))
        # (B, C, L, M) -> (B, C, p * Lp/p, M) = (B, C*p, Lp/p, M)
        x = x.index_select(2, fold).reshape(B, C * p, fold.numel() // p, M)
        x = self.fc2(self.act(self.norm(self.fc1(x))))
        # (B, C*p, Lp/p, M) = (B, C, p * Lp/p, M) -> (B, C, L, M)
        x = x.reshape(B, C, fold.numel(), M).index_select(2, unfold)
        # a contiguous result: the blend that follows runs 2-3x slower on a transposed one
        return x.transpose(2, 3).contiguous() if self.axis == 'w' else x

    def switch_to_deploy(self, in_affine=None) -> None:
        """Folds ``norm`` (and the preceding norm's ``in_affine``, which acts on the
        un-folded channels) into ``fc1``."""
        self.fc1 = _fold_into_conv(self.fc1, in_affine, _bn_affine(self.norm),
                                   repeat=self.region_size)
        self.norm = nn.Identity()


class _SummedSpatialMeans(torch.autograd.Function):
    """``sum_i maps[i].mean(dim=(2, 3), keepdim=True)`` for maps of one shape, without
    materialising the sum. The gradient reaching each map is one value per (image, channel),
    returned as a broadcast view instead of a full map."""

    @staticmethod
    def forward(ctx, *maps: torch.Tensor) -> torch.Tensor:
        ctx.shape = maps[0].shape
        pooled = maps[0].mean(dim=(2, 3), keepdim=True)
        for x in maps[1:]:
            pooled = pooled + x.mean(dim=(2, 3), keepdim=True)
        return pooled

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        H, W = ctx.shape[2:]
        grad = (grad / (H * W)).expand(ctx.shape)
        return tuple(grad if needed else None for needed in ctx.needs_input_grad)


def _summed_spatial_means(*maps: torch.Tensor) -> torch.Tensor:
    if _traced():
        return sum(x.mean(dim=(2, 3), keepdim=True) for x in maps)
    return _SummedSpatialMeans.apply(*maps)


class HireMixer(BaseModule):
    """The Hire module: height, width and channel branches blended by split attention.

    Args:
        channels (int): Number of input and output channels ``C``.
        region_size (int): Positions per region in the height and width branches.
        step (int): Cross-region shift of this block; 0 disables it.
        norm_cfg (dict): Config of the norm layers inside the region MLPs.
            Defaults to ``dict(type='BN')``.
        act_cfg (dict): Config of the activation in the reweighting MLP.
            Defaults to ``dict(type='GELU')``.
        region_act_cfg (dict): Config of the activation inside the region MLPs.
            Defaults to ``dict(type='ReLU')``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 channels: int,
                 region_size: int,
                 step: int,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='GELU'),
                 region_act_cfg: dict = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.channels = channels
        self.height_mlp = RegionMLP(channels, region_size, step, 'h', norm_cfg, region_act_cfg)
        self.width_mlp = RegionMLP(channels, region_size, step, 'w', norm_cfg, region_act_cfg)
        self.channel_fc = PointwiseConv2d(channels, channels, bias=True)
        self.reweight = Sequential()
        self.reweight.add_module('fc1', nn.Conv2d(channels, channels // 4, 1, bias=True))
        self.reweight.add_module('act', build_activation_layer(act_cfg))
        self.reweight.add_module('fc2', nn.Conv2d(channels // 4, channels * 3, 1, bias=True))
        self.proj = PointwiseConv2d(channels, channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C = x.shape[:2]
        h = self.height_mlp(x)
        w = self.width_mlp(x)
        c = self.channel_fc(x)
        # mean(h + w + c) as three reductions, without materialising the sum
        pooled = _summed_spatial_means(h, w, c)
        # (B, C, 1, 1) -> (B, 3C, 1, 1) -> (B, C, 3); channel c*3 + k weighs branch k of c
        attn = self.reweight(pooled).reshape(B, C, 3).softmax(dim=2)
        # (B, C, 3) -> 3 x (B, C, 1, 1)
        a_h, a_w, a_c = (attn[..., k].reshape(B, C, 1, 1) for k in range(3))
        # h * a_h + w * a_w + c * a_c in three passes over the maps instead of five
        mixed = torch.addcmul(torch.mul(h, a_h), w, a_w)
        return self.proj(mixed.addcmul_(c, a_c))

    def switch_to_deploy(self, in_affine=None) -> None:
        """Folds the region MLPs' norms, and ``in_affine`` (the block's ``norm1``), into the
        first convolution of each branch."""
        self.height_mlp.switch_to_deploy(in_affine)
        self.width_mlp.switch_to_deploy(in_affine)
        if in_affine is not None:
            self.channel_fc = _fold_into_conv(self.channel_fc, in_affine)


class HireBlock(BaseModule):
    """A Hire-MLP block: a Hire module and a channel MLP, each in a pre-norm residual.

    Args:
        channels (int): Number of input and output channels.
        region_size (int): Positions per region of the Hire module.
        step (int): Cross-region shift of this block; 0 disables it.
        mlp_ratio (float): Hidden width of the channel MLP relative to ``channels``.
            Defaults to 4.
        drop_path_rate (float): Stochastic depth rate of both residual branches.
            Defaults to 0.
        norm_cfg (dict): Config of the norm layers. Defaults to ``dict(type='BN')``.
        act_cfg (dict): Config of the activation of the channel and reweighting MLPs.
            Defaults to ``dict(type='GELU')``.
        region_act_cfg (dict): Config of the activation inside the region MLPs.
            Defaults to ``dict(type='ReLU')``.
        with_cp (bool): Trade compute for memory with gradient checkpointing.
            Defaults to False.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 channels: int,
                 region_size: int,
                 step: int,
                 mlp_ratio: float = 4.,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='GELU'),
                 region_act_cfg: dict = dict(type='ReLU'),
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.with_cp = with_cp
        self.step = step
        self.norm1 = build_norm_layer(norm_cfg, channels)[1]
        self.token_mixer = HireMixer(channels, region_size, step, norm_cfg, act_cfg,
                                     region_act_cfg)
        self.norm2 = build_norm_layer(norm_cfg, channels)[1]
        hidden = int(channels * mlp_ratio)
        self.mlp = Sequential()
        self.mlp.add_module('fc1', PointwiseConv2d(channels, hidden, bias=True))
        self.mlp.add_module('act', build_activation_layer(act_cfg))
        self.mlp.add_module('fc2', PointwiseConv2d(hidden, channels, bias=True))
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    #: Positions per tile of the inference-time channel MLP: the hidden tile
    #: (``mlp_ratio * C`` x this) stays in the CPU cache between the two matrix products.
    MLP_TILE = 2048

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        if ((isinstance(self.drop_path, nn.Identity) or not self.training)
                and not _tokens_last(x)):
            # the branch outputs are fresh tensors no backward needs: add in place (not
            # channels-last, where they are views, and autograd would copy for the add)
            x = self.token_mixer(self.norm1(x)).add_(x)
            if self._tile_mlp(x):
                return self._tiled_mlp_residual(self.norm2(x), x)
            return self.mlp(self.norm2(x)).add_(x)
        x = x + self.drop_path(self.token_mixer(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def _tile_mlp(self, x: torch.Tensor) -> bool:
        """Tile the channel MLP in float32/64 CPU inference on large maps; tracing,
        compiling, autocast and autograd take the plain path."""
        return (not torch.is_grad_enabled() and x.device.type == 'cpu'
                and x.shape[2] * x.shape[3] >= self.MLP_TILE
                and autocast_dtype('cpu') is None and not _traced())

    def _tiled_mlp_residual(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``x + mlp(y)`` computed tile by tile, so that the 4x wider hidden map is never
        written to memory as a whole: on the first stage's maps this is the difference
        between a memory-bound and a compute-bound MLP."""
        B, C, H, W = x.shape
        fc1, fc2 = self.mlp.fc1, self.mlp.fc2
        w1, b1 = fc1.weight.reshape(fc1.out_channels, C), fc1.bias.reshape(-1, 1)
        w2, b2 = fc2.weight.reshape(C, fc2.in_channels), fc2.bias.reshape(-1, 1)
        ys, xs = y.reshape(B, C, H * W), x.reshape(B, C, H * W)
        out = torch.empty_like(xs)
        for b in range(B):
            for start in range(0, H * W, self.MLP_TILE):
                end = min(start + self.MLP_TILE, H * W)
                hidden = self.mlp.act(torch.addmm(b1, w1, ys[b, :, start:end]))
                out[b, :, start:end] = torch.addmm(xs[b, :, start:end], w2, hidden).add_(b2)
        return out.reshape(B, C, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._inner_forward, x, use_reentrant=False)
        return self._inner_forward(x)

    def switch_to_deploy(self) -> None:
        """Folds ``norm1`` into the Hire module's first convolutions and ``norm2`` into
        ``mlp.fc1`` (the pad is circular, so a per-channel affine commutes with the shift,
        pad and fold)."""
        self.token_mixer.switch_to_deploy(_bn_affine(self.norm1))
        self.mlp.fc1 = _fold_into_conv(self.mlp.fc1, _bn_affine(self.norm2))
        self.norm1 = nn.Identity()
        self.norm2 = nn.Identity()


@MODELS.register_module()
class HireMLP(BaseModule):
    """Hire-MLP backbone.

    A pyramid of four stages of Hire blocks behind a 7x7 stride-4 stem, with 3x3 stride-2
    downsampling between stages, as in `Hire-MLP: Vision MLP via Hierarchical Rearrangement
    <https://arxiv.org/abs/2108.13341>`_. Inside each block, tokens of small regions are folded
    into channels and mixed by 1x1 convolutions (inner-region rearrangement), and every other
    block shifts the feature map so that regions exchange information (cross-region
    rearrangement). The output of stage ``i`` has stride ``4 * 2**i``.

    Args:
        arch (str | dict): Architecture. A name in :attr:`arch_zoo` (``'tiny'``, ``'small'``,
            ``'base'``, ``'large'`` or their first letters), or a dict with the keys
            ``depths``, ``channels``, ``mlp_ratios``, ``region_sizes``, ``step_strides`` and
            ``step_dilations``, each a sequence with one entry per stage.
            Defaults to ``'tiny'``.
        in_channels (int): Number of input image channels. Defaults to 3.
        drop_path_rate (float): Stochastic depth rate of the last block; block ``k`` of
            ``n`` gets ``drop_path_rate * k / (n - 1)``. Defaults to 0.
        out_indices (Sequence[int] | int): Stages whose outputs are returned, counted from 0;
            negative values count from the end. Each gets its own norm layer; outputs come
            in stage order. Defaults to ``(3, )``.
        frozen_stages (int): Stages to freeze (parameters fixed, norm layers in eval mode):
            -1 freezes nothing, 0 the stem only, and ``k > 0`` the stem and the first ``k``
            stages with their downsampling layers, as in mmdet. Defaults to -1.
        norm_eval (bool): Keep every batch-norm layer in eval mode (frozen statistics) while
            training. Defaults to False.
        norm_cfg (dict): Config of all norm layers. Defaults to ``dict(type='BN')``.
        act_cfg (dict): Config of the activation of the channel and reweighting MLPs.
            Defaults to ``dict(type='GELU')``.
        conv_act_cfg (dict): Config of the activation after the stem, the downsampling
            convolutions and inside the region MLPs. Defaults to ``dict(type='ReLU')``.
        with_cp (bool): Use gradient checkpointing in every block, which saves memory at the
            cost of a second forward pass. Defaults to False.
        init_cfg (dict | list[dict], optional): Initialization config. Defaults to truncated
            normal (std 0.02) weights and zero biases for convolutions and linear layers, and
            weight 1, bias 0 for norm layers.
        pretrained (str, optional): Deprecated; what mmseg's ``model.pretrained`` hands the
            backbone. A checkpoint path becomes ``init_cfg=dict(type='Pretrained',
            checkpoint=pretrained)`` with a warning; an OpenMMLab or torchvision ResNet left
            over from a base config is refused. Defaults to None.

    Examples:
        >>> import torch
        >>> from mmhire.models import HireMLP
        >>> model = HireMLP(arch='tiny', out_indices=(0, 1, 2, 3)).eval()
        >>> for out in model(torch.rand(1, 3, 224, 224)):
        ...     print(tuple(out.shape))
        (1, 64, 56, 56)
        (1, 128, 28, 28)
        (1, 320, 14, 14)
        (1, 512, 7, 7)
    """

    _shared = dict(
        mlp_ratios=[4, 4, 4, 4],
        region_sizes=[4, 3, 3, 2],
        step_strides=[2, 2, 3, 2],
        step_dilations=[2, 2, 1, 1])
    arch_zoo: Dict[str, dict] = {
        **dict.fromkeys(['t', 'tiny'],
                        dict(depths=[2, 2, 4, 2], channels=[64, 128, 320, 512], **_shared)),
        **dict.fromkeys(['s', 'small'],
                        dict(depths=[3, 4, 10, 3], channels=[64, 128, 320, 512], **_shared)),
        **dict.fromkeys(['b', 'base'],
                        dict(depths=[4, 6, 24, 3], channels=[64, 128, 320, 512], **_shared)),
        **dict.fromkeys(['l', 'large'],
                        dict(depths=[4, 6, 24, 3], channels=[96, 192, 384, 768], **_shared)),
    }
    arch_keys = ('depths', 'channels', 'mlp_ratios', 'region_sizes', 'step_strides',
                 'step_dilations')

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 drop_path_rate: float = 0.,
                 out_indices: Union[Sequence[int], int] = (3, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='GELU'),
                 conv_act_cfg: dict = dict(type='ReLU'),
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = [
                     dict(type='TruncNormal', layer=['Conv2d', 'Linear'], std=.02, bias=0.),
                     dict(type='Constant', layer=['_BatchNorm', 'GroupNorm', 'LayerNorm'],
                          val=1., bias=0.),
                 ],
                 pretrained: Optional[str] = None) -> None:
        if pretrained is not None:
            init_cfg = self._pretrained_init_cfg(pretrained)
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._parse_arch(arch)
        depths = self.arch_settings['depths']
        channels = self.arch_settings['channels']
        self.num_stages = len(depths)
        self.channels = list(channels)
        self.in_channels = in_channels
        self.out_indices = self._parse_out_indices(out_indices, self.num_stages)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'HireMLP: frozen_stages must be an int from -1 (nothing) to '
                             f'{self.num_stages} (every stage), got {frozen_stages!r}')
        if not 0. <= drop_path_rate < 1.:
            raise ValueError(f'HireMLP: drop_path_rate must be in [0, 1), got {drop_path_rate!r}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.deploy = False
        self.with_cp = with_cp

        total = sum(depths)
        rates = [drop_path_rate * k / max(total - 1, 1) for k in range(total)]

        # downsample_layers[0] is the stem; downsample_layers[i] opens stage i.
        self.downsample_layers = nn.ModuleList()
        self.stages = nn.ModuleList()
        block_id = 0
        for i, depth in enumerate(depths):
            if i == 0:
                down = ConvModule(in_channels, channels[0], 7, stride=4, padding=2, bias=True,
                                  norm_cfg=norm_cfg, act_cfg=conv_act_cfg)
            else:
                down = ConvModule(channels[i - 1], channels[i], 3, stride=2, padding=1,
                                  bias=True, norm_cfg=norm_cfg, act_cfg=conv_act_cfg)
            self.downsample_layers.append(down)
            stride = self.arch_settings['step_strides'][i]
            dilation = self.arch_settings['step_dilations'][i]
            blocks = [
                HireBlock(
                    channels[i],
                    region_size=self.arch_settings['region_sizes'][i],
                    step=(j % stride) * dilation,
                    mlp_ratio=self.arch_settings['mlp_ratios'][i],
                    drop_path_rate=rates[block_id + j],
                    norm_cfg=norm_cfg,
                    act_cfg=act_cfg,
                    region_act_cfg=conv_act_cfg,
                    with_cp=with_cp) for j in range(depth)
            ]
            block_id += depth
            self.stages.append(Sequential(*blocks))

        for i in self.out_indices:
            self.add_module(f'norm{i}', build_norm_layer(norm_cfg, channels[i])[1])

        self._freeze_stages()

    @property
    def out_channels(self) -> List[int]:
        """Channels of each returned feature map, in the order of ``out_indices``."""
        return [self.channels[i] for i in self.out_indices]

    @property
    def out_strides(self) -> List[int]:
        """Stride of each returned feature map, in the order of ``out_indices``."""
        return [4 * 2**i for i in self.out_indices]

    @classmethod
    def _parse_arch(cls, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                raise ValueError(f'HireMLP: unknown arch {arch!r}; choose one of '
                                 f'{sorted(cls.arch_zoo)} or pass a dict with the keys '
                                 f'{list(cls.arch_keys)}')
            return copy.deepcopy(cls.arch_zoo[key])
        if not isinstance(arch, dict):
            raise TypeError(f'HireMLP: arch must be a str or a dict, got {type(arch).__name__}')
        missing = [k for k in cls.arch_keys if k not in arch]
        unknown = [k for k in arch if k not in cls.arch_keys]
        if missing or unknown:
            raise ValueError(f'HireMLP: custom arch needs exactly the keys {list(cls.arch_keys)};'
                             f' missing {missing}, unknown {unknown}')
        settings = {k: list(arch[k]) if isinstance(arch[k], (list, tuple)) else arch[k]
                    for k in cls.arch_keys}
        bad = [k for k, v in settings.items() if not isinstance(v, list) or not v]
        if bad:
            raise ValueError(f'HireMLP: custom arch values must be non-empty lists with one '
                             f'entry per stage; not so for {bad}')
        lengths = {k: len(v) for k, v in settings.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f'HireMLP: custom arch lists must all have one entry per stage, '
                             f'got lengths {lengths}')
        for key in ('depths', 'channels', 'region_sizes', 'step_strides'):
            if any(not isinstance(v, int) or v < 1 for v in settings[key]):
                raise ValueError(f'HireMLP: arch {key} must be positive ints, '
                                 f'got {settings[key]}')
        if any(not isinstance(v, int) or v < 0 for v in settings['step_dilations']):
            raise ValueError(f'HireMLP: arch step_dilations must be non-negative ints, '
                             f'got {settings["step_dilations"]}')
        if any(v <= 0 for v in settings['mlp_ratios']):
            raise ValueError(f'HireMLP: arch mlp_ratios must be positive, '
                             f'got {settings["mlp_ratios"]}')
        if any(c < 4 for c in settings['channels']):
            raise ValueError(f'HireMLP: arch channels must be at least 4 (the reweighting MLP '
                             f'has channels // 4 units), got {settings["channels"]}')
        return settings

    @staticmethod
    def _parse_out_indices(out_indices: Union[Sequence[int], int],
                           num_stages: int) -> List[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, (list, tuple)) or not out_indices:
            raise TypeError(f'HireMLP: out_indices must be an int or a non-empty sequence of '
                            f'ints, got {out_indices!r}')
        parsed = []
        for index in out_indices:
            if not isinstance(index, int) or not -num_stages <= index < num_stages:
                raise ValueError(f'HireMLP: out_indices entries must be ints in '
                                 f'[{-num_stages}, {num_stages - 1}] for {num_stages} stages, '
                                 f'got {index!r}')
            parsed.append(index % num_stages)
        if len(set(parsed)) != len(parsed):
            raise ValueError(f'HireMLP: out_indices name a stage twice: {list(out_indices)}')
        return sorted(parsed)

    @staticmethod
    def _pretrained_init_cfg(pretrained: str) -> dict:
        """The ``init_cfg`` that replaces the deprecated ``pretrained`` argument."""
        if not isinstance(pretrained, str):
            raise TypeError(f'HireMLP: pretrained must be a checkpoint path or None, got '
                            f'{type(pretrained).__name__}')
        if re.match(r'(open-mmlab|torchvision|mmcls|mmpretrain)://', pretrained):
            raise ValueError(
                f'HireMLP: model.pretrained={pretrained!r} is a weights file of another '
                f'backbone, left over from the base config; set model.pretrained=None in your '
                f'config (--cfg-options model.pretrained=None) and give HireMLP its weights '
                f"with backbone.init_cfg=dict(type='Pretrained', checkpoint=<converted "
                f"Hire-MLP file>, prefix='backbone.')")
        warnings.warn(
            'HireMLP: the pretrained argument is deprecated; use init_cfg=dict('
            "type='Pretrained', checkpoint=..., prefix='backbone.') instead",
            DeprecationWarning, stacklevel=3)
        return dict(type='Pretrained', checkpoint=pretrained)

    def init_weights(self) -> None:
        """Initialises the weights; a ``Pretrained`` entry of ``init_cfg`` is loaded last and
        strictly checked: a checkpoint with tensors of other shapes, or with none of this
        backbone's keys, is refused with the keys that do not fit."""
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
        cfgs = [cfg for cfg in cfgs if cfg]
        pretrained = [cfg for cfg in cfgs if cfg.get('type') == 'Pretrained']
        if not pretrained:
            return super().init_weights()
        original, self.init_cfg = self.init_cfg, [
            cfg for cfg in cfgs if cfg.get('type') != 'Pretrained'] or None
        try:
            super().init_weights()
        finally:
            self.init_cfg = original
        self._load_pretrained(pretrained[-1])

    def _load_pretrained(self, cfg: dict) -> None:
        from mmengine.runner.checkpoint import _load_checkpoint, load_state_dict
        path, prefix = cfg.get('checkpoint'), cfg.get('prefix')
        if not path:
            raise ValueError('HireMLP: init_cfg of type Pretrained needs checkpoint=<file or '
                             'URL>')
        checkpoint = _load_checkpoint(path, map_location=cfg.get('map_location', 'cpu'))
        state_dict = checkpoint.get('state_dict', checkpoint)
        state_dict = {k[len('module.'):] if k.startswith('module.') else k: v
                      for k, v in state_dict.items()}
        if prefix:
            prefix = prefix if prefix.endswith('.') else prefix + '.'
            with_prefix = {k[len(prefix):]: v for k, v in state_dict.items()
                           if k.startswith(prefix)}
            if not with_prefix:
                raise CheckpointError(
                    f'HireMLP: no key of Pretrained checkpoint {path!r} starts with '
                    f'prefix={prefix!r} (it has e.g. {sorted(state_dict)[:3]}); set prefix to '
                    f'the backbone\'s name in that checkpoint, or None for a bare backbone')
            state_dict = with_prefix
        own = self.state_dict()
        if not prefix and not own.keys() & state_dict.keys():
            # A whole classifier given without a prefix (the deprecated `pretrained`
            # argument): its backbone is the part that can fit.
            backbone = {k[len('backbone.'):]: v for k, v in state_dict.items()
                        if k.startswith('backbone.')}
            state_dict = backbone or state_dict
        if not own.keys() & state_dict.keys():
            raise CheckpointError(
                f'HireMLP: Pretrained checkpoint {path!r} (prefix={prefix!r}) holds none of '
                f'the backbone\'s keys (it has e.g. {sorted(state_dict)[:3]}). A released '
                f'Hire-MLP file must first be converted with '
                f'tools/model_converters/hire_mlp_to_mmhire.py; a converted classifier needs '
                f"prefix='backbone.'")
        bad, count = shape_mismatches(self, state_dict)
        if count:
            raise CheckpointError(
                f'HireMLP: Pretrained checkpoint {path!r} does not fit arch '
                f'{self.arch_settings["channels"]}/{self.arch_settings["depths"]}: '
                f'{count} tensor(s) have other shapes, first {"; ".join(bad)}. Use the '
                f'checkpoint converted for this arch')
        load_state_dict(self, state_dict, strict=False, logger='current')

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen = [self.downsample_layers[0]]
        for i in range(self.frozen_stages):
            if i > 0:
                frozen.append(self.downsample_layers[i])
            frozen.append(self.stages[i])
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f'HireMLP expects a 4-D tensor (B, C, H, W), got {shape}')
        if not x.is_floating_point():
            raise TypeError(f'HireMLP expects a floating-point input, got {x.dtype}; convert '
                            f'images with .float() and normalise them first')
        if x.size(1) != self.in_channels:
            raise ValueError(f'HireMLP was built with in_channels={self.in_channels} but the '
                             f'input has {x.size(1)} channels (shape {tuple(x.shape)})')
        if min(x.shape[2:]) < MIN_INPUT_SIZE:
            raise ValueError(f'HireMLP needs inputs of at least {MIN_INPUT_SIZE}x'
                             f'{MIN_INPUT_SIZE} pixels, got {tuple(x.shape[2:])}; resize or '
                             f'pad the images')

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Returns the normed outputs of the stages in ``out_indices``, each (B, C_i, H_i, W_i).

        ``H_0 = floor((H - 3) / 4) + 1`` after the stem and ``H_{i+1} = ceil(H_i / 2)``.
        """
        self._check_input(x)
        # with autograd, the stages run channels-last: each 1x1 convolution is then one
        # matrix product over the batch, forward and backward (a 4-5% faster training step
        # on the CPU); inference keeps NCHW, where deploy folding and chunking apply
        tokens = torch.is_grad_enabled() and not _traced()
        outs = []
        for i in range(self.num_stages):
            x = self.downsample_layers[i](x)
            if tokens:
                x = x.contiguous(memory_format=torch.channels_last)
            x = self._run_stage(self.stages[i], x)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x).contiguous())
        return tuple(outs)

    #: Elements (per image: channels x height x width) of the feature map that one chunk of
    #: a CPU inference batch holds as it goes through a stage: 4 MiB of float32, about one
    #: core's L2 cache, so that a block's intermediate maps stay in cache.
    INFER_CHUNK_ELEMENTS = 2**20

    def _run_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Runs ``stage`` on ``x``; in CPU inference on large maps, a few images at a time.

        Inference treats every image on its own (BatchNorm uses its running statistics), so
        splitting the batch changes no number, while the smaller working set cuts the time of
        the memory-bound work on the early, large maps (1.7x on the first stage at 448x448).
        Training, autograd, tracing and compiling take the whole batch.
        """
        per_image = x.numel() // max(x.size(0), 1)
        chunk = max(1, self.INFER_CHUNK_ELEMENTS // max(per_image, 1))
        if (chunk >= x.size(0) or stage.training or torch.is_grad_enabled()
                or x.device.type != 'cpu' or _traced()):
            return stage(x)
        return torch.cat([stage(part) for part in x.split(chunk)])

    def switch_to_deploy(self) -> 'HireMLP':
        """Turns the backbone into its inference form: every BatchNorm except the output
        norms is folded into a neighbouring convolution, which saves a pass over every
        feature map. Outputs are unchanged up to float rounding; the model can no longer be
        trained. Call it on an eval-mode model with trained statistics."""
        if self.deploy:
            return self
        for layer in self.downsample_layers:
            layer.conv = _fold_into_conv(layer.conv, out_affine=_bn_affine(layer.norm))
            layer.with_norm = False
            delattr(layer, layer.norm_name)
            layer.norm_name = None
        for stage in self.stages:
            for block in stage:
                block.switch_to_deploy()
        self.deploy = True
        return self.eval()

    def train(self, mode: bool = True) -> 'HireMLP':
        if mode and getattr(self, 'deploy', False):
            raise RuntimeError('HireMLP: this model was switched to deploy form (BatchNorm '
                               'folded into convolutions) and can only run inference; build '
                               'a new one to train')
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self


__all__ = ['HireMLP', 'HireBlock', 'HireMixer', 'PointwiseConv2d', 'RegionMLP', 'MIN_INPUT_SIZE']

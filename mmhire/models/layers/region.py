"""Shift, wrap-pad and fold the regions of one spatial axis into the channels, and back.

The plain form does what the paper says: roll by ``step`` and append the first positions
until the length is a multiple of ``region_size`` (as many times around as needed), both in
one gather of positions computed from the tensor's size, then fold each run of
``region_size`` positions into the channels (channel ``c * p + k`` holds position ``k``).
Unfolding reverses the fold, then drops the padding and rolls back in one gather. Nothing
depends on the size in Python, so ``torch.compile(dynamic=True)`` and ONNX export capture one
graph for every size.

The fast form, :class:`RegionGathers` (eager CPU inference only), keeps its index tables per
length and gathers in the folded order, which also saves the permute's copy. Figures in
docs/benchmarks.md.
"""
from typing import Dict, Tuple

import torch

from mmhire.utils.compat import is_exporting


def _mod(index: torch.Tensor, length) -> torch.Tensor:
    """``index mod length`` for a non-negative ``index`` and a length that may be a traced or
    symbolic size. Under ``torch.export`` (the dynamo ONNX exporter, which takes no symbolic
    divisor in ``remainder``) it is written with a floor division; ``torch.compile`` keeps
    the plain remainder, which it compiles in less than half the time."""
    if is_exporting():
        return index - torch.div(index, length, rounding_mode='floor') * length
    return index % length


def shift_pad_positions(length, region_size: int, step: int,
                        device: torch.device) -> torch.Tensor:
    """Source position of each position of the shifted, wrap-padded sequence: position ``i``
    (of ``Lp``, the length rounded up to a multiple of ``region_size``) holds element
    ``(i - step) mod L``: the roll by ``step``, then the first positions again after the
    last, as many times around as needed (the pad may be longer than the map).

    Computed by tensor operations from ``length`` (a traced or symbolic size under
    ONNX export and ``torch.compile``), the same for every length."""
    groups = (length + region_size - 1) // region_size
    # (i - step) mod L written as (i + step * (L - 1)) mod L, whose operands are never
    # negative: ONNX's integer division truncates
    return _mod(torch.arange(groups * region_size, device=device) + step * (length - 1),
                length)


def unshift_positions(length, step: int, device: torch.device) -> torch.Tensor:
    """Position of the shifted sequence that each of the ``length`` original positions went
    to: ``(i + step) mod L``, the roll back; computed from ``length`` as
    :func:`shift_pad_positions` is."""
    return _mod(torch.arange(length, device=device) + step, length)


def fold_regions(x: torch.Tensor, dim: int, region_size: int, step: int) -> torch.Tensor:
    """The plain form: (B, C, H, W) -> (B, C*p, Hp/p, W) for ``dim=2``, or
    (B, C*p, H, Wp/p) for ``dim=3``, where Hp (Wp) is the padded length.

    The shift and the circular pad are one gather, which makes a new map of the padded
    length whatever the size (no view whose layout depends on the size, no branch)."""
    p = region_size
    B, C, H, W = x.shape
    groups = (x.size(dim) + p - 1) // p
    # (B, C, H, W) -> (B, C, Hp, W) for dim 2, likewise along W for dim 3
    x = x.index_select(dim, shift_pad_positions(x.size(dim), p, step, x.device))
    if dim == 2:
        # (B, C, Hp, W) -> (B, C, Hp/p, p, W) -> (B, C, p, Hp/p, W) -> (B, C*p, Hp/p, W)
        x = x.reshape(B, C, groups, p, W).permute(0, 1, 3, 2, 4)
        return x.reshape(B, C * p, groups, W)
    # (B, C, H, Wp) -> (B, C, H, Wp/p, p) -> (B, C, p, H, Wp/p) -> (B, C*p, H, Wp/p)
    x = x.reshape(B, C, H, groups, p).permute(0, 1, 4, 2, 3)
    return x.reshape(B, C * p, H, groups)


def unfold_regions(y: torch.Tensor, dim: int, region_size: int, step: int,
                   length: int) -> torch.Tensor:
    """The plain inverse of :func:`fold_regions`: unfold, then drop the padding and roll
    back in one gather (position i takes padded position (i + step) mod L), which makes a new
    map whatever the pad: a crop would give a view whose layout depends on the size."""
    p = region_size
    B, Cp, H, W = y.shape
    C = Cp // p
    if dim == 2:
        # (B, C*p, Hp/p, W) -> (B, C, p, Hp/p, W) -> (B, C, Hp/p, p, W) -> (B, C, Hp, W)
        x = y.reshape(B, C, p, H, W).permute(0, 1, 3, 2, 4).reshape(B, C, H * p, W)
    else:
        # (B, C*p, H, Wp/p) -> (B, C, p, H, Wp/p) -> (B, C, H, Wp/p, p) -> (B, C, H, Wp)
        x = y.reshape(B, C, p, H, W).permute(0, 1, 3, 4, 2).reshape(B, C, H, W * p)
    # (B, C, Hp, W) -> (B, C, H, W), likewise along W
    return x.index_select(dim, unshift_positions(length, step, y.device))


def fold_regions_last(x: torch.Tensor, dim: int, region_size: int, step: int) -> torch.Tensor:
    """:func:`fold_regions` for the channels-last export form, position-major:
    (B, H, W, C) -> (B, Hp/p, W, p*C) for ``dim=1``, or (B, H, Wp/p, p*C) for ``dim=2``,
    channel ``k * C + c`` holding position ``k`` of channel ``c``. The width fold is a
    reshape; the height fold moves whole C-vectors."""
    p = region_size
    # (B, H, W, C) -> (B, Hp, W, C) for dim 1, likewise along W for dim 2
    x = x.index_select(dim, shift_pad_positions(x.size(dim), p, step, x.device))
    B, H, W, C = x.shape
    if dim == 1:
        # (B, Hp, W, C) -> (B, Hp/p, p, W, C) -> (B, Hp/p, W, p, C) -> (B, Hp/p, W, p*C)
        x = x.reshape(B, H // p, p, W, C).permute(0, 1, 3, 2, 4)
        return x.reshape(B, H // p, W, p * C)
    # (B, H, Wp, C) -> (B, H, Wp/p, p*C)
    return x.reshape(B, H, W // p, p * C)


def unfold_regions_last(y: torch.Tensor, dim: int, region_size: int, step: int,
                        length: int) -> torch.Tensor:
    """The inverse of :func:`fold_regions_last`, dropping the padding and rolling back in one
    gather as :func:`unfold_regions` does."""
    p = region_size
    B, H, W, Cp = y.shape
    C = Cp // p
    if dim == 1:
        # (B, Hp/p, W, p*C) -> (B, Hp/p, W, p, C) -> (B, Hp/p, p, W, C) -> (B, Hp, W, C)
        x = y.reshape(B, H, W, p, C).permute(0, 1, 3, 2, 4).reshape(B, H * p, W, C)
    else:
        # (B, H, Wp/p, p*C) -> (B, H, Wp, C)
        x = y.reshape(B, H, W * p, C)
    # (B, Hp, W, C) -> (B, H, W, C), likewise along W
    return x.index_select(dim, unshift_positions(length, step, y.device))


def fold_index(length: int, region_size: int, step: int) -> torch.Tensor:
    """One gather that shifts, wrap-pads and groups regions, region position first.

    Gathering ``x`` (B, C, L, M) along L with this index gives (B, C, p * L/p, M) ordered as
    (k, g) for position k of region g, which *is* (B, C*p, L/p, M) with channel ``c*p + k``.
    """
    source = shift_pad_positions(length, region_size, step, torch.device('cpu'))
    # (Lp, ) ordered (g, k) -> (Lp/p, p) -> (p, Lp/p) -> (Lp, ) ordered (k, g)
    return source.reshape(-1, region_size).t().reshape(-1)


def unfold_index(length: int, region_size: int, step: int) -> torch.Tensor:
    """The gather that undoes :func:`fold_index`: position ``i`` takes padded position
    ``r = (i + step) mod length``, at ``(r mod p) * L/p + r // p``; the padding is dropped."""
    groups = (length + region_size - 1) // region_size
    rows = unshift_positions(length, step, torch.device('cpu'))
    return rows % region_size * groups + rows // region_size


class RegionGathers:
    """The fast form of :func:`fold_regions` and :func:`unfold_regions`: one
    ``index_select`` each way, with the index tables kept per length and device.

    The width axis works on a transposed copy, so that its gathers, like the height axis's,
    move whole rows: gathering rows of a transposed view reads memory with a stride and
    costs more than the copy (5.0 vs 1.8 ms on a 16 x 64 x 56 x 56 map). Its folded map is
    therefore (B, C*p, Wp/p, H), which the 1x1 convolutions and per-channel norms between
    :meth:`fold` and :meth:`unfold` do not mind.
    """

    def __init__(self, region_size: int, step: int) -> None:
        self.region_size = region_size
        self.step = step
        self._tables: Dict[Tuple[int, torch.device], Tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, length: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        key = (length, device)
        if key not in self._tables:
            # never inference-mode tensors, which autograd refuses
            with torch.inference_mode(False):
                self._tables[key] = (
                    fold_index(length, self.region_size, self.step).to(device),
                    unfold_index(length, self.region_size, self.step).to(device))
        return self._tables[key]

    def fold(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        if dim == 3:
            x = x.transpose(2, 3).contiguous()  # (B, C, H, W) -> (B, C, W, H)
        B, C, L, M = x.shape
        fold, _ = self.tables(L, x.device)
        # (B, C, L, M) -> (B, C, p * Lp/p, M) = (B, C*p, Lp/p, M)
        return x.index_select(2, fold).reshape(B, C * self.region_size,
                                               fold.numel() // self.region_size, M)

    def unfold(self, y: torch.Tensor, dim: int, length: int) -> torch.Tensor:
        B, Cp, G, M = y.shape
        _, unfold = self.tables(length, y.device)
        # (B, C*p, Lp/p, M) = (B, C, p * Lp/p, M) -> (B, C, L, M)
        x = y.reshape(B, Cp // self.region_size, self.region_size * G, M).index_select(2, unfold)
        # a contiguous result: the blend that follows runs 2-3x slower on a transposed one
        return x.transpose(2, 3).contiguous() if dim == 3 else x

"""Shift, wrap-pad and fold the regions of one spatial axis into the channels, and back.

The plain form does what the paper says, step by step: roll by ``step``, append the first
positions until the length is a multiple of ``region_size`` (as many times around as
needed), and fold each run of ``region_size`` positions into the channels (channel
``c * p + k`` holds position ``k``); unfolding crops and rolls back.

The fast form, :class:`RegionGathers`, does each direction with one ``index_select``, which
saves the copies of the roll, the pad and the permute in CPU inference. Figures in
docs/benchmarks.md.
"""
from typing import Dict, List, Tuple

import torch


def fold_regions(x: torch.Tensor, dim: int, region_size: int, step: int) -> torch.Tensor:
    """The plain form: (B, C, H, W) -> (B, C*p, Hp/p, W) for ``dim=2``, or
    (B, C*p, H, Wp/p) for ``dim=3``, where Hp (Wp) is the padded length."""
    p, length = region_size, x.size(dim)
    if step:
        x = torch.roll(x, step, dims=dim)  # position i takes position (i - step) mod L
    # ceil divisions of positive numbers only: ONNX's integer division truncates
    padded = (length + p - 1) // p * p
    if padded > length:
        # circular pad: the first positions again after the last, as often as needed
        x = torch.cat([x] * ((padded + length - 1) // length), dim=dim).narrow(dim, 0, padded)
    B, C, H, W = x.shape
    if dim == 2:
        # (B, C, Hp, W) -> (B, C, Hp/p, p, W) -> (B, C, p, Hp/p, W) -> (B, C*p, Hp/p, W)
        return x.reshape(B, C, H // p, p, W).permute(0, 1, 3, 2, 4).reshape(B, C * p, H // p, W)
    # (B, C, H, Wp) -> (B, C, H, Wp/p, p) -> (B, C, p, H, Wp/p) -> (B, C*p, H, Wp/p)
    return x.reshape(B, C, H, W // p, p).permute(0, 1, 4, 2, 3).reshape(B, C * p, H, W // p)


def unfold_regions(y: torch.Tensor, dim: int, region_size: int, step: int,
                   length: int) -> torch.Tensor:
    """The plain inverse of :func:`fold_regions`: unfold, drop the padding, roll back."""
    p = region_size
    B, Cp, H, W = y.shape
    C = Cp // p
    if dim == 2:
        # (B, C*p, Hp/p, W) -> (B, C, p, Hp/p, W) -> (B, C, Hp/p, p, W) -> (B, C, Hp, W)
        x = y.reshape(B, C, p, H, W).permute(0, 1, 3, 2, 4).reshape(B, C, H * p, W)
    else:
        # (B, C*p, H, Wp/p) -> (B, C, p, H, Wp/p) -> (B, C, H, Wp/p, p) -> (B, C, H, Wp)
        x = y.reshape(B, C, p, H, W).permute(0, 1, 3, 4, 2).reshape(B, C, H, W * p)
    x = x.narrow(dim, 0, length)
    return torch.roll(x, -step, dims=dim) if step else x


def _shift_pad_index(length: int, region_size: int, step: int) -> List[int]:
    """Source position of each position of the shifted, wrap-padded sequence: position
    ``i`` holds element ``((i mod length) - step) mod length``."""
    padded = -(-length // region_size) * region_size
    return [(i % length - step) % length for i in range(padded)]


def fold_index(length: int, region_size: int, step: int) -> torch.Tensor:
    """One gather that shifts, wrap-pads and groups regions, region position first.

    Gathering ``x`` (B, C, L, M) along L with this index gives (B, C, p * L/p, M) ordered as
    (k, g) for position k of region g, which *is* (B, C*p, L/p, M) with channel ``c*p + k``.
    """
    source = _shift_pad_index(length, region_size, step)
    groups = len(source) // region_size
    return torch.tensor([source[g * region_size + k] for k in range(region_size)
                         for g in range(groups)], dtype=torch.long)


def unfold_index(length: int, region_size: int, step: int) -> torch.Tensor:
    """The gather that undoes :func:`fold_index`: position ``i`` takes padded position
    ``r = (i + step) mod length``, at ``(r mod p) * L/p + r // p``; the padding is dropped."""
    groups = -(-length // region_size)
    rows = [(i + step) % length for i in range(length)]
    return torch.tensor([(r % region_size) * groups + r // region_size for r in rows],
                        dtype=torch.long)


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

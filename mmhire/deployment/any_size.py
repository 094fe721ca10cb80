"""Forwards of mmseg modules that take every size from the tensor, for exports that serve
every input size from one graph (mmdeploy's rewrites and the dynamo ONNX exporter).

- ``Upsample`` (Semantic FPN's scale heads) computes its output size as
  ``int(size * scale_factor)`` in Python; under the TorchScript tracer that is a constant of
  the export size. :func:`upsample_forward` computes ``size * factor`` on the traced or
  symbolic size (integer factors).
- UperNet's pyramid pooling (``PPM``) uses ``adaptive_avg_pool2d``, which mmdeploy replaces
  by a fixed-kernel average pool. :func:`adaptive_avg_pool2d_any_size` is the exact adaptive
  pool, as differences of a cumulative sum gathered at each bin's start and end (PyTorch's
  bins: ``floor(i * L / n)`` to ``ceil((i + 1) * L / n)``), with operators ONNX opset 11 has.
"""
import contextlib
from typing import Callable, Iterator, Optional, Sequence, Union

import torch
import torch.nn as nn
from torch.nn.modules.utils import _pair


def _pool_axis(x: torch.Tensor, dim: int, bins: int) -> torch.Tensor:
    """Adaptive average pooling of ``x`` along ``dim`` into ``bins`` bins, with the length
    taken from the tensor (traced under ONNX export), so it holds for every size."""
    length = x.size(dim)
    index = torch.arange(bins, device=x.device)
    start = index * length // bins
    end = ((index + 1) * length + bins - 1) // bins
    total = torch.cumsum(x, dim)
    total = torch.cat([torch.zeros_like(total.narrow(dim, 0, 1)), total], dim)
    summed = total.index_select(dim, end) - total.index_select(dim, start)
    shape = [1] * x.dim()
    shape[dim] = bins
    return summed / (end - start).to(x.dtype).view(shape)


def adaptive_avg_pool2d_any_size(x: torch.Tensor,
                                 output_size: Union[int, Sequence[int]]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, output_size)`` for a (B, C, H, W) map, written with
    operators that ONNX opset 11 has and that take the map's size from the graph."""
    bins_h, bins_w = _pair(output_size)
    return _pool_axis(_pool_axis(x, 2, int(bins_h)), 3, int(bins_w))


def ppm_forward(ppm: nn.Module, x: torch.Tensor):
    """mmseg ``PPM.forward`` with :func:`adaptive_avg_pool2d_any_size`."""
    from mmseg.models.utils import resize

    outs = []
    for branch in ppm:
        pool, rest = branch[0], branch[1:]
        if not isinstance(pool, nn.AdaptiveAvgPool2d):
            raise TypeError(f'mmhire\'s PPM forward expects each branch to start with '
                            f'AdaptiveAvgPool2d, not {type(pool).__name__}')
        out = rest(adaptive_avg_pool2d_any_size(x, pool.output_size))
        outs.append(resize(out, size=x.size()[2:], mode='bilinear',
                           align_corners=ppm.align_corners))
    return outs


def upsample_forward(upsample: nn.Module, x: torch.Tensor,
                     fallback: Optional[Callable] = None):
    """mmseg ``Upsample.forward`` with the size computed from the tensor for integer scale
    factors; other cases go to ``fallback(upsample, x)`` (mmseg's own forward by default)."""
    from mmseg.models.utils import resize
    from mmseg.models.utils.wrappers import Upsample

    factor = upsample.scale_factor
    if upsample.size or factor is None or not float(factor).is_integer():
        return (fallback or Upsample.forward)(upsample, x)
    factor = int(factor)
    return resize(x, [x.size(2) * factor, x.size(3) * factor], None, upsample.mode,
                  upsample.align_corners)


@contextlib.contextmanager
def any_size_mmseg() -> Iterator[None]:
    """Within the block, mmseg's ``Upsample`` and ``PPM`` run the forwards above."""
    from mmseg.models.decode_heads.psp_head import PPM
    from mmseg.models.utils.wrappers import Upsample

    saved = Upsample.forward, PPM.forward
    original_upsample = saved[0]
    Upsample.forward = lambda self, x: upsample_forward(self, x, original_upsample)
    PPM.forward = ppm_forward
    try:
        yield
    finally:
        Upsample.forward, PPM.forward = saved


__all__ = ['adaptive_avg_pool2d_any_size', 'ppm_forward', 'any_size_mmseg',
           'upsample_forward']

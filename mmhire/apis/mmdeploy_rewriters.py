"""mmdeploy rewrites that let mmseg's heads serve every input size from one ONNX file.

Two of mmseg's modules fix sizes of the export input in the graph, whatever the backbone:

- ``Upsample`` (Semantic FPN's scale heads) computes its output size as
  ``int(size * scale_factor)`` in Python, which the tracer records as a constant;
- UperNet's pyramid pooling (``PPM``) pools to 1, 2, 3 and 6 bins with
  ``adaptive_avg_pool2d``, which mmdeploy replaces by an average pool whose kernel is fixed
  from the export size (and which fails outright when the map is smaller than the bins).

The rewrites here compute both from the traced size instead: the upsampled size as
``size * scale_factor`` in the graph, and the adaptive pool exactly, as differences of a
cumulative sum gathered at each bin's start and end (PyTorch's bins: ``floor(i * L / n)``
to ``ceil((i + 1) * L / n)``). They are registered with mmdeploy when this module is
imported, which ``import mmhire`` does when mmdeploy is already imported, and mmhire's deploy
configs do through ``codebase_config.module``.
"""
from typing import Sequence, Union

import torch
import torch.nn as nn
from mmdeploy.core import FUNCTION_REWRITER
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


@FUNCTION_REWRITER.register_rewriter(func_name='mmseg.models.decode_heads.psp_head.PPM.forward')
def ppm__forward(self, x: torch.Tensor):
    """PPM's forward with the exact adaptive pool of any input size."""
    from mmseg.models.utils import resize

    outs = []
    for branch in self:
        pool, rest = branch[0], branch[1:]
        if not isinstance(pool, nn.AdaptiveAvgPool2d):
            raise TypeError(f'mmhire\'s PPM rewrite expects each branch to start with '
                            f'AdaptiveAvgPool2d, not {type(pool).__name__}')
        out = rest(adaptive_avg_pool2d_any_size(x, pool.output_size))
        outs.append(resize(out, size=x.size()[2:], mode='bilinear',
                           align_corners=self.align_corners))
    return outs


@FUNCTION_REWRITER.register_rewriter(func_name='mmseg.models.utils.wrappers.Upsample.forward')
def upsample__forward(self, x: torch.Tensor):
    """Upsample's forward with the output size computed in the graph (integer factors), so
    it follows the input's size; other factors keep mmseg's own computation."""
    from mmseg.models.utils import resize

    ctx = FUNCTION_REWRITER.get_context()
    factor = self.scale_factor
    if self.size or factor is None or not float(factor).is_integer():
        return ctx.origin_func(self, x)
    factor = int(factor)
    size = [x.size(2) * factor, x.size(3) * factor]
    return resize(x, size, None, self.mode, self.align_corners)


__all__ = ['adaptive_avg_pool2d_any_size', 'ppm__forward', 'upsample__forward']

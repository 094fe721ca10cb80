"""Parameter and MAC counts of a model built from a config."""
from typing import Dict, Tuple

import torch
import torch.nn as nn


class _TensorForward(nn.Module):
    """Exposes the part of an OpenMMLab model that runs on a bare image tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        # Classifiers run end to end on a tensor; detectors and segmentors need data samples
        # beyond their feature extractor, so only backbone (+ neck) is counted there.
        self.scope = 'whole model' if hasattr(model, 'head') and hasattr(
            model, 'extract_feat') and not hasattr(model, 'decode_head') and not hasattr(
                model, 'rpn_head') else 'backbone + neck'

    def forward(self, x: torch.Tensor):
        if self.scope == 'whole model':
            return self.model(x, mode='tensor')
        return self.model.extract_feat(x)


def model_complexity(model: nn.Module, shape: Tuple[int, int]) -> Dict[str, object]:
    """Counts the parameters and multiply-accumulates of ``model`` on one ``(3, *shape)`` image.

    Args:
        model (nn.Module): An mmpretrain classifier, mmdet detector or mmseg segmentor, or any
            module whose ``extract_feat`` takes an image batch.
        shape (tuple[int, int]): Input height and width.

    Returns:
        dict: ``macs`` and ``params`` (ints), ``scope`` (what was counted) and ``table`` (the
        per-module breakdown as text).
    """
    from mmengine.analysis import get_model_complexity_info

    wrapped = _TensorForward(model).eval()
    with torch.no_grad():
        info = get_model_complexity_info(
            wrapped, input_shape=(3, *shape), show_table=True, show_arch=False)
    return dict(macs=int(info['flops']), params=int(info['params']), scope=wrapped.scope,
                table=info['out_table'])

"""The layers behind :class:`~mmhire.models.HireMLP`'s fast forms, each beside the plain
form it replaces, and the one switch between them (:mod:`.switch`)."""
from .deploy import bn_affine, fold_into_conv
from .pointwise import PointwiseConv2d, pointwise_bmm
from .region import RegionGathers, fold_index, fold_regions, unfold_index, unfold_regions
from .switch import FORMS, MODES, check_mode, cpu_vendor, fast_path, use_fast_form

__all__ = [
    'FORMS', 'MODES', 'PointwiseConv2d', 'RegionGathers', 'bn_affine', 'check_mode',
    'cpu_vendor', 'fast_path', 'fold_index', 'fold_into_conv', 'fold_regions',
    'pointwise_bmm', 'unfold_index', 'unfold_regions', 'use_fast_form'
]

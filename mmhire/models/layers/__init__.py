"""The layers behind :class:`~mmhire.models.HireMLP`'s fast forms, each beside the plain
form it replaces, and the one switch between them (:mod:`.switch`)."""
from .deploy import bn_affine, fold_into_conv
from .layout import channels_last, is_channels_last, per_channel, use_channels_last
from .pointwise import PointwiseConv2d, pointwise_bmm, position_major
from .region import (
    RegionGathers,
    fold_index,
    fold_regions,
    fold_regions_last,
    unfold_index,
    unfold_regions,
    unfold_regions_last,
)
from .switch import FORMS, MODES, check_mode, cpu_vendor, fast_path, use_fast_form

__all__ = [
    'FORMS', 'MODES', 'PointwiseConv2d', 'RegionGathers', 'bn_affine', 'channels_last',
    'check_mode', 'cpu_vendor', 'fast_path', 'fold_index', 'fold_into_conv', 'fold_regions',
    'fold_regions_last', 'is_channels_last', 'per_channel', 'pointwise_bmm', 'position_major',
    'unfold_index', 'unfold_regions', 'unfold_regions_last', 'use_channels_last',
    'use_fast_form'
]

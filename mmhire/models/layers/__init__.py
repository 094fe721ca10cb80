"""The layers behind :class:`~mmhire.models.HireMLP`'s fast forms, each beside the plain
form it replaces, and the plan that chooses between them once per forward (:mod:`.plan`)."""
from .deploy import bn_affine, fold_into_conv
from .layout import (
    EXPORT_LAYOUTS,
    check_export_layout,
    exports_channels_last,
    per_channel,
    runs_channels_last,
)
from .plan import (
    FORMS,
    MODES,
    PLAIN,
    Plan,
    check_mode,
    cpu_vendor,
    current_plan,
    fast_path,
    make_plan,
    use_plan,
)
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

__all__ = [
    'EXPORT_LAYOUTS', 'FORMS', 'MODES', 'PLAIN', 'Plan', 'PointwiseConv2d', 'RegionGathers',
    'bn_affine', 'check_export_layout', 'check_mode', 'cpu_vendor', 'current_plan',
    'exports_channels_last', 'fast_path', 'fold_index', 'fold_into_conv', 'fold_regions',
    'fold_regions_last', 'make_plan', 'per_channel', 'pointwise_bmm', 'position_major',
    'runs_channels_last', 'unfold_index', 'unfold_regions', 'unfold_regions_last', 'use_plan'
]

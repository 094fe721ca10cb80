"""mmhire: Hire-MLP backbones for OpenMMLab 2.0.

Importing the package registers :class:`mmhire.models.HireMLP` in mmengine's root
``MODELS`` registry, so configs of mmdet, mmseg and mmpretrain can use
``dict(type='HireMLP', ...)`` once ``custom_imports=dict(imports=['mmhire'])`` is set.
It also makes mmengine load local checkpoint files with ``weights_only=True`` (see
:mod:`mmhire.utils.checkpoint`). Nothing here imports mmdet, mmseg or mmpretrain. Where
mmdeploy is already imported (its tools import the model's ``custom_imports``), mmhire's
mmdeploy rewrites are registered too. Without an mmcv (or mmcv-lite) it supports, the import
stops with the command that installs one.
"""
import sys

from .utils.compat import check_mmcv

check_mmcv()

from . import engine  # noqa: E402,F401  (registers the hooks and the CPU mixed-precision wrapper)
from .models import HireMLP  # noqa: E402
from .utils import install_safe_loader  # noqa: E402
from .version import __version__  # noqa: E402

install_safe_loader()
if 'mmdeploy' in sys.modules:
    from .deployment import mmdeploy_rewriters  # noqa: F401  (registers them with mmdeploy)

__all__ = ['HireMLP', '__version__']

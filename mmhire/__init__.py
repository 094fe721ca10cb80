"""mmhire: Hire-MLP backbones for OpenMMLab 2.0.

Importing the package registers :class:`mmhire.models.HireMLP` in mmengine's root
``MODELS`` registry, so configs of mmdet, mmseg and mmpretrain can use
``dict(type='HireMLP', ...)`` once ``custom_imports=dict(imports=['mmhire'])`` is set.
It also makes mmengine load local checkpoint files with ``weights_only=True`` (see
:mod:`mmhire.utils.checkpoint`). Nothing here imports mmdet, mmseg or mmpretrain. Where
mmdeploy is already imported (its tools import the model's ``custom_imports``), mmhire's
mmdeploy rewrites are registered too.
"""
import sys

from . import engine  # noqa: F401  (registers the hooks and the CPU mixed-precision wrapper)
from .models import HireMLP
from .utils import install_safe_loader
from .version import __version__

install_safe_loader()
if 'mmdeploy' in sys.modules:
    from .deployment import mmdeploy_rewriters  # noqa: F401  (registers them with mmdeploy)

__all__ = ['HireMLP', '__version__']

"""mmhire: Hire-MLP backbones for OpenMMLab 2.0.

Importing the package registers :class:`mmhire.models.HireMLP` in mmengine's root
``MODELS`` registry, so configs of mmdet, mmseg and mmpretrain can use
``dict(type='HireMLP', ...)`` once ``custom_imports=dict(imports=['mmhire'])`` is set.
Nothing here imports mmdet, mmseg or mmpretrain.
"""
from . import engine  # noqa: F401  (registers the CPU mixed-precision optim wrapper)
from .models import HireMLP
from .version import __version__

__all__ = ['HireMLP', '__version__']

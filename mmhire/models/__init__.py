from .backbones import HireMLP

__all__ = ['HireMLP']

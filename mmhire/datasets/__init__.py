from .demo_data import make_demo_data

__all__ = ['make_demo_data']

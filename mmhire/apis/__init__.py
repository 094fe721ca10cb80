from .inference import inference_and_draw

__all__ = ['inference_and_draw']

from .inference import draw_prediction, inference_and_draw, predict, summarize

__all__ = ['draw_prediction', 'inference_and_draw', 'predict', 'summarize']

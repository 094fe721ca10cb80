"""Run a trained model of any of the three libraries on one image and draw the result."""
import os
import os.path as osp

import numpy as np
from mmengine.config import Config

from mmhire.engine.runtime import ConfigError, convert_sync_bn, drop_pretrained_init
from mmhire.utils.config import load_config


def _read_rgb(image_path: str) -> np.ndarray:
    import mmcv

    if not osp.isfile(image_path):
        raise FileNotFoundError(f'image {image_path!r} does not exist')
    image = mmcv.imread(image_path, channel_order='rgb')
    if image is None:
        raise ValueError(f'image {image_path!r} could not be decoded')
    return image


def _inference_config(config) -> Config:
    cfg = load_config(config) if isinstance(config, str) else config.copy()
    convert_sync_bn(cfg)
    drop_pretrained_init(cfg)
    return cfg


def inference_and_draw(config, checkpoint: str, image_path: str, out_file: str,
                       score_thr: float = 0.3, device: str = 'cpu') -> dict:
    """Runs ``checkpoint`` of ``config`` on ``image_path`` and writes the drawn result.

    Args:
        config (str | Config): An mmdet, mmseg or mmpretrain config.
        checkpoint (str): Trained weights for it.
        image_path (str): The input image.
        out_file (str): Where to write the drawing (PNG or JPEG).
        score_thr (float): Detections below this score are not drawn. Defaults to 0.3.
        device (str): Where to run. Defaults to ``'cpu'``.

    Returns:
        dict: ``library`` and a short summary of the prediction.
    """
    cfg = _inference_config(config)
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint!r} does not exist')
    image = _read_rgb(image_path)
    out_dir = osp.dirname(osp.abspath(out_file))
    os.makedirs(out_dir, exist_ok=True)
    scope = cfg.get('default_scope')
    if scope == 'mmdet':
        from mmdet.apis import inference_detector, init_detector
        from mmdet.registry import VISUALIZERS

        model = init_detector(cfg, checkpoint, device=device)
        result = inference_detector(model, image[..., ::-1].copy())
        visualizer = VISUALIZERS.build(dict(type='DetLocalVisualizer', name='mmhire_det'))
        visualizer.dataset_meta = model.dataset_meta
        visualizer.add_datasample('result', image, data_sample=result, draw_gt=False,
                                  pred_score_thr=score_thr, out_file=out_file)
        scores = result.pred_instances.scores
        summary = dict(detections=int((scores >= score_thr).sum()))
    elif scope == 'mmseg':
        from mmseg.apis import inference_model, init_model
        from mmseg.registry import VISUALIZERS

        model = init_model(cfg, checkpoint, device=device)
        result = inference_model(model, image[..., ::-1].copy())
        visualizer = VISUALIZERS.build(dict(type='SegLocalVisualizer', name='mmhire_seg',
                                            alpha=0.5))
        visualizer.dataset_meta = model.dataset_meta
        visualizer.add_datasample('result', image, data_sample=result, draw_gt=False,
                                  out_file=out_file)
        labels = np.unique(result.pred_sem_seg.data.cpu().numpy())
        summary = dict(classes=[model.dataset_meta['classes'][i] for i in labels])
    elif scope == 'mmpretrain':
        from mmpretrain.apis import ImageClassificationInferencer

        inferencer = ImageClassificationInferencer(model=cfg, pretrained=checkpoint,
                                                   device=device)
        prediction = inferencer(image_path, show=False)[0]
        from mmpretrain.registry import VISUALIZERS
        from mmpretrain.structures import DataSample

        sample = DataSample().set_pred_label(prediction['pred_label']).set_pred_score(
            prediction['pred_scores'])
        visualizer = VISUALIZERS.build(dict(type='UniversalVisualizer', name='mmhire_cls'))
        visualizer.visualize_cls(image, sample, classes=inferencer.classes,
                                 resize=max(224, min(image.shape[:2])), out_file=out_file)
        summary = dict(label=prediction['pred_class'], score=float(prediction['pred_score']))
    else:
        raise ConfigError(f'{scope!r} configs are not supported; use an mmdet, mmseg or '
                          f'mmpretrain config')
    if not osp.isfile(out_file):
        raise RuntimeError(f'the visualizer did not write {out_file}')
    return dict(library=scope, **summary)


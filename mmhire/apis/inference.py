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
    try:
        image = mmcv.imread(image_path, channel_order='rgb')
    except Exception:  # noqa: BLE001 (OpenCV's error on bytes it cannot decode)
        image = None
    if image is None:
        raise ValueError(f'image {image_path!r} could not be decoded')
    return image


def _inference_config(config) -> Config:
    cfg = load_config(config) if isinstance(config, str) else config.copy()
    convert_sync_bn(cfg)
    drop_pretrained_init(cfg)
    return cfg


def predict(config, checkpoint: str, image_path: str, device: str = 'cpu'):
    """Runs ``checkpoint`` of ``config`` on ``image_path``, as the library's own inference
    API does.

    Returns:
        tuple: the library (``mmdet``, ``mmseg`` or ``mmpretrain``), its data sample of the
        prediction (``DetDataSample``, ``SegDataSample`` or mmpretrain's ``DataSample``), at
        the image's size, and the model's ``dataset_meta`` (classes, palette).
    """
    cfg = _inference_config(config)
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint!r} does not exist')
    scope = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmseg', 'mmpretrain'):
        raise ConfigError(f'{scope!r} configs are not supported; use an mmdet, mmseg or '
                          f'mmpretrain config')
    from mmengine.registry import DefaultScope

    # the library's own scope, whatever an earlier model of another library set
    with DefaultScope.overwrite_default_scope(scope):
        return scope, *_predict(cfg, scope, checkpoint, image_path, device)


def _predict(cfg, scope: str, checkpoint: str, image_path: str, device: str):
    image = _read_rgb(image_path)
    if scope == 'mmdet':
        from mmdet.apis import inference_detector, init_detector

        model = init_detector(cfg, checkpoint, device=device)
        return inference_detector(model, image[..., ::-1].copy()), model.dataset_meta
    if scope == 'mmseg':
        from mmseg.apis import inference_model, init_model

        model = init_model(cfg, checkpoint, device=device)
        return inference_model(model, image[..., ::-1].copy()), model.dataset_meta
    from mmpretrain.apis import ImageClassificationInferencer
    from mmpretrain.structures import DataSample

    inferencer = ImageClassificationInferencer(model=cfg, pretrained=checkpoint,
                                               device=device)
    prediction = inferencer(image_path, show=False)[0]
    sample = DataSample().set_pred_label(prediction['pred_label']).set_pred_score(
        prediction['pred_scores'])
    return sample, dict(classes=inferencer.classes)


def class_name(dataset_meta: dict, label: int) -> str:
    """The name of class ``label``, or its number where the model has no class names."""
    classes = (dataset_meta or {}).get('classes')
    return str(classes[label]) if classes and 0 <= label < len(classes) else str(label)


def summarize(library: str, sample, dataset_meta: dict, score_thr: float = 0.3) -> dict:
    """What a prediction says, in short: the number of detections scoring at least
    ``score_thr``, the classes present in a class map, or a classifier's best class and its
    top five."""
    if library == 'mmdet':
        scores = sample.pred_instances.scores
        return dict(detections=int((scores >= score_thr).sum()))
    if library == 'mmseg':
        labels = np.unique(sample.pred_sem_seg.data.cpu().numpy())
        return dict(classes=[class_name(dataset_meta, int(i)) for i in labels])
    scores = sample.pred_score
    top = scores.argsort(descending=True)[:5].tolist()
    return dict(label=class_name(dataset_meta, top[0]), score=float(scores[top[0]]),
                top5=[(class_name(dataset_meta, i), round(float(scores[i]), 4)) for i in top])


def draw_prediction(library: str, image: np.ndarray, sample, dataset_meta: dict,
                    out_file: str, score_thr: float = 0.3) -> None:
    """Draws ``sample`` (a prediction at the image's size) on the RGB ``image`` with the
    library's visualizer and writes it to ``out_file``: boxes and masks, the class map, or
    the top class."""
    from mmengine.registry import DefaultScope

    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    with DefaultScope.overwrite_default_scope(library):
        _draw(library, image, sample, dataset_meta, out_file, score_thr)
    if not osp.isfile(out_file):
        raise RuntimeError(f'the visualizer did not write {out_file}')


def _draw(library: str, image: np.ndarray, sample, dataset_meta: dict, out_file: str,
          score_thr: float) -> None:
    if library == 'mmdet':
        from mmdet.registry import VISUALIZERS

        visualizer = VISUALIZERS.build(dict(type='DetLocalVisualizer', name='mmhire_det'))
        visualizer.dataset_meta = dataset_meta
        visualizer.add_datasample('result', image, data_sample=sample, draw_gt=False,
                                  pred_score_thr=score_thr, out_file=out_file)
    elif library == 'mmseg':
        from mmseg.registry import VISUALIZERS

        visualizer = VISUALIZERS.build(dict(type='SegLocalVisualizer', name='mmhire_seg',
                                            alpha=0.5))
        visualizer.dataset_meta = dataset_meta
        visualizer.add_datasample('result', image, data_sample=sample, draw_gt=False,
                                  out_file=out_file)
    else:
        from mmpretrain.registry import VISUALIZERS

        visualizer = VISUALIZERS.build(dict(type='UniversalVisualizer', name='mmhire_cls'))
        visualizer.visualize_cls(image, sample, classes=(dataset_meta or {}).get('classes'),
                                 resize=max(224, min(image.shape[:2])), out_file=out_file)


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
        dict: ``library`` and a short summary of the prediction (:func:`summarize`).
    """
    library, sample, meta = predict(config, checkpoint, image_path, device)
    draw_prediction(library, _read_rgb(image_path), sample, meta, out_file, score_thr)
    return dict(library=library, **summarize(library, sample, meta, score_thr))

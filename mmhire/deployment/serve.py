"""Serving a deployed model: an image file in, the prediction at the image's size out, through
ONNX Runtime, OpenVINO or mmdeploy's SDK.

The model is an ONNX file of ``tools/deployment/export_onnx.py`` (a classifier or a
segmentor) or the work dir of ``python -m mmhire deploy`` (any of the three libraries). Both
state their input contract in the ONNX file (:mod:`mmhire.deployment.contract`): the image
goes through the config's own test pipeline and data preprocessor, built from the library's
registries, so that the graph gets what the PyTorch model gets; the outputs become the
library's data sample at the image's size (boxes rescaled and clipped as mmdet does, masks
pasted with mmdet's paster, the class map cropped and resized, class probabilities), which
the library's visualizer draws. mmdeploy's SDK does its own preprocessing from the work
dir's ``pipeline.json``.
"""
import os.path as osp
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from mmhire.utils.compat import import_runtime

from .contract import input_contract, load_onnx_header, read_contract

#: The runtimes :func:`serve` runs a model with.
RUNTIMES = ('onnxruntime', 'openvino', 'sdk')
#: mmdeploy's SDK reads these beside ``end2end.onnx``.
SDK_FILES = ('deploy.json', 'pipeline.json')
#: The task of a config without a contract, by library (mmdet: with or without masks).
TASKS = {'mmpretrain': 'classification', 'mmseg': 'segmentation'}


class ServeError(RuntimeError):
    """A model, image or runtime that cannot serve, with what to do about it."""


@dataclass
class Prediction:
    """What :func:`serve` returns: the library, its data sample of the prediction at the
    image's size, the class names and palette, and the RGB image."""
    library: str
    sample: Any
    dataset_meta: Dict[str, Any]
    image: np.ndarray


def locate(model: str) -> Tuple[str, Optional[str]]:
    """The ONNX file of ``model`` (a file, or a deployment work dir's ``end2end.onnx``) and
    the work dir that mmdeploy's SDK can load, or None where the SDK files are missing."""
    if osp.isdir(model):
        onnx_path = osp.join(model, 'end2end.onnx')
        if not osp.isfile(onnx_path):
            raise ServeError(f'{model} holds no end2end.onnx: give the work dir that '
                             '`python -m mmhire deploy` wrote, or an .onnx file that '
                             'tools/deployment/export_onnx.py wrote')
        directory = model
    elif osp.isfile(model):
        onnx_path, directory = model, osp.dirname(osp.abspath(model))
    else:
        raise ServeError(f'model {model!r} does not exist: give an .onnx file or the work dir '
                         'of a deployment')
    sdk = all(osp.isfile(osp.join(directory, name)) for name in SDK_FILES)
    return onnx_path, directory if sdk else None


def load_contract(onnx_path: str, config: Optional[str] = None,
                  header=None) -> Dict[str, Any]:
    """The input contract the ONNX file states, or, for a file without one (exported by
    another tool), the one of the model config ``config``. ``header`` is the file as
    :func:`.contract.load_onnx_header` read it, where the caller has it."""
    if header is None:
        header = load_onnx_header(onnx_path)
    contract = read_contract(header)
    if contract is None:
        if config is None:
            raise ServeError(
                f'{onnx_path} states no input contract (it was not exported by mmhire): give '
                'the model config with --config CONFIG, or export it again with '
                'tools/deployment/export_onnx.py or `python -m mmhire deploy`')
        from mmhire.utils.config import load_config, model_library
        cfg = load_config(config)
        library = model_library(cfg)
        if library == 'mmdet':
            masks = bool((cfg.model.get('roi_head') or {}).get('mask_head'))
            task = 'instance-segmentation' if masks else 'detection'
        elif library in TASKS:
            task = TASKS[library]
        else:
            raise ServeError(f'{config} is an {library!r} config; serve takes mmpretrain, '
                             'mmseg and mmdet models')
        names = [o.name for o in header.graph.output]
        contract = input_contract(cfg, library, task, output_names=names)
    if contract['task'] == 'backbone':
        raise ServeError(f'{onnx_path} is a backbone: its outputs are feature maps, not a '
                         'prediction. Export the whole model (export_onnx.py --classifier '
                         'CONFIG or --segmentor CONFIG, or `python -m mmhire deploy`)')
    return contract


def _tuples(value: Any) -> Any:
    """JSON lists back into the tuples OpenMMLab configs use (sizes, means)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_tuples(v) for v in value]
        return tuple(items) if all(isinstance(v, (int, float)) for v in items) else items
    return value


def _registry(library: str, name: str):
    """The registry ``name`` of ``library``, with all of the library's modules registered."""
    import_module(f'{library}.utils').register_all_modules(init_default_scope=False)
    return getattr(import_module(f'{library}.registry'), name)


def preprocess(contract: Dict[str, Any], image_path: str) -> Tuple[np.ndarray, Any]:
    """The input tensor of the graph for the image at ``image_path`` (1, 3, H, W), made by the
    config's test pipeline and data preprocessor, and the data sample that carries the
    image's sizes (``ori_shape``, ``img_shape``, ``scale_factor``)."""
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope

    library = contract['library']
    settings = _tuples(contract['data_preprocessor'])
    if contract['input']['normalized_in_graph']:
        settings.update(mean=None, std=None)
    # built in the library's scope, whatever scope an earlier model set
    with DefaultScope.overwrite_default_scope(library):
        transforms = _registry(library, 'TRANSFORMS')
        pipeline = Compose([transforms.build(_tuples(step))
                            for step in contract['test_pipeline']])
        preprocessor = _registry(library, 'MODELS').build(settings)
    data = pipeline(dict(img_path=image_path))
    with torch.no_grad():
        batch = preprocessor(dict(inputs=[data['inputs']], data_samples=[data['data_samples']]),
                             False)
    x = batch['inputs'].float()
    minimum = contract['input']['min_size']
    if min(x.shape[-2:]) < minimum:
        raise ServeError(f'{image_path} becomes a {x.shape[-2]}x{x.shape[-1]} input after the '
                         f'test pipeline, below the model\'s minimum of {minimum} pixels a '
                         'side: give a larger image')
    return x.numpy(), batch['data_samples'][0]


def onnxruntime_model(onnx_path: str) -> Callable[[np.ndarray], Dict[str, np.ndarray]]:
    """The ONNX file in ONNX Runtime on the CPU, as ``input -> {output name: array}``."""
    from .export import onnx_session
    session = onnx_session(onnx_path)
    name = session.get_inputs()[0].name
    outputs = [o.name for o in session.get_outputs()]
    return lambda x: dict(zip(outputs, session.run(None, {name: x})))


def openvino_model(path: str, precision: str = 'f32', input_axes: Optional[List[int]] = None
                   ) -> Callable[[np.ndarray], Dict[str, np.ndarray]]:
    """An ONNX file, or the OpenVINO model (``end2end.xml``) that mmdeploy's conversion wrote
    beside it, compiled by OpenVINO for the CPU, as ``input -> {output name: array}``.

    The model takes every size its ONNX file takes: an OpenVINO model converted at one size
    is reshaped to the ONNX file's dynamic axes (OpenVINO's current API also returns
    outputs whose size depends on the data, such as a detector's boxes, which mmdeploy's
    OpenVINO wrapper cannot). ``precision`` is OpenVINO's inference precision: ``'f32'`` by
    default, which computes what PyTorch computes; OpenVINO's own default on a CPU with bf16
    instructions (AMX, avx512_bf16) is bf16, which changes the outputs (on the demo
    segmentor, 2% of the pixels got another class). ``'bf16'`` asks for it where the CPU
    has it. ``input_axes`` are the ONNX file's input axes (:func:`onnx_input_axes`) where the
    caller has read them; else they are read from the ``end2end.onnx`` beside an .xml."""
    ov = import_runtime('openvino', 'serving with OpenVINO')
    core = ov.Core()
    try:
        model = core.read_model(path)
        if path.endswith('.xml'):
            axes = input_axes or onnx_input_axes(osp.join(osp.dirname(path), 'end2end.onnx'))
            if axes is not None:
                model.reshape({model.inputs[0].get_any_name(): ov.PartialShape(axes)})
        compiled = core.compile_model(model, 'CPU', {'INFERENCE_PRECISION_HINT': precision})
    except RuntimeError as error:
        raise ServeError(f'OpenVINO cannot read {path}: {str(error).splitlines()[0]}. '
                         'Serve it with --runtime onnxruntime') from None
    names = [o.get_any_name() for o in compiled.outputs]

    def run(x: np.ndarray) -> Dict[str, np.ndarray]:
        result = compiled([x])
        return {name: result[o] for name, o in zip(names, compiled.outputs)}

    return run


def onnx_input_axes(onnx) -> Optional[List[int]]:
    """The input's shape in an ONNX file (its path, or the model
    :func:`.contract.load_onnx_header` read), -1 for each dynamic axis; None where there is
    no such file."""
    if isinstance(onnx, str):
        if not osp.isfile(onnx):
            return None
        onnx = load_onnx_header(onnx)
    dims = onnx.graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField('dim_value') else -1 for d in dims]


def to_sample(contract: Dict[str, Any], outputs: Dict[str, np.ndarray], sample):
    """The graph's ``outputs`` for one image as the library's prediction at the image's size,
    set on ``sample`` (the data sample of :func:`preprocess`)."""
    library = contract['library']
    arrays = list(outputs.values())
    if library == 'mmpretrain':
        scores = torch.from_numpy(np.asarray(arrays[0][0], dtype=np.float32))
        return sample.set_pred_score(scores).set_pred_label(int(scores.argmax()))
    if library == 'mmseg':
        if contract['task'] == 'segmentation-logits':
            return _class_map_of_logits(contract, arrays[0], sample)
        return _class_map(arrays[0], sample)
    return _detections(contract, outputs, sample)


def _class_map(classes: np.ndarray, sample):
    """A (1, 1, H, W) or (1, H, W) class map of the input: the padding cropped, resized to the
    image's size (nearest class), as ``pred_sem_seg``."""
    from mmengine.structures import PixelData
    classes = torch.from_numpy(np.asarray(classes)).reshape(classes.shape[-2:]).long()
    height, width = sample.img_shape[:2]
    classes = classes[:height, :width]
    original = tuple(sample.ori_shape[:2])
    if tuple(classes.shape) != original:
        classes = F.interpolate(classes[None, None].float(), size=original,
                                mode='nearest')[0, 0].long()
    sample.pred_sem_seg = PixelData(data=classes[None])
    return sample


def _class_map_of_logits(contract: Dict[str, Any], logits: np.ndarray, sample):
    """(1, classes, H, W) class scores of the input as mmseg's ``postprocess_result`` makes
    its class map: the padding cropped, the scores resized bilinearly to the image's size,
    then the best class (a threshold at 0.5 of the sigmoid for one output channel)."""
    from mmengine.structures import PixelData
    logits = torch.from_numpy(np.asarray(logits, dtype=np.float32))
    height, width = sample.img_shape[:2]
    logits = F.interpolate(logits[:, :, :height, :width], size=tuple(sample.ori_shape[:2]),
                           mode='bilinear', align_corners=contract.get('align_corners', False))
    if logits.shape[1] == 1:
        threshold = contract.get('test_cfg', {}).get('threshold', 0.5)
        classes = (logits[0].sigmoid() > threshold).long()
    else:
        classes = logits[0].argmax(dim=0, keepdim=True)
    sample.pred_sem_seg = PixelData(data=classes)
    return sample


def _detections(contract: Dict[str, Any], outputs: Dict[str, np.ndarray], sample):
    """mmdeploy's detector outputs (``dets``, ``labels``, ``masks``) as mmdet's
    ``pred_instances``: boxes clipped to the resized image and scaled back to the original,
    masks pasted into the original image and thresholded, as mmdet's heads do."""
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
    from mmengine.structures import InstanceData

    dets = torch.from_numpy(np.asarray(outputs['dets'])[0]).float()
    labels = torch.from_numpy(np.asarray(outputs['labels'])[0]).long()
    keep = dets[:, 4] > 0
    dets, labels = dets[keep], labels[keep]
    height, width = sample.img_shape[:2]
    boxes = dets[:, :4].clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    scale = boxes.new_tensor(sample.scale_factor).repeat(2)
    boxes = boxes / scale
    instances = InstanceData(bboxes=boxes, scores=dets[:, 4], labels=labels)
    if 'masks' in outputs:
        masks = torch.from_numpy(np.asarray(outputs['masks'])[0]).float()[keep]
        ori_h, ori_w = sample.ori_shape[:2]
        threshold = (contract.get('test_cfg', {}).get('rcnn') or {}).get('mask_thr_binary', 0.5)
        if len(masks):
            pasted, _ = _do_paste_mask(masks[:, None], boxes, ori_h, ori_w, skip_empty=False)
        else:
            pasted = masks.new_zeros((0, ori_h, ori_w))
        instances.masks = pasted >= threshold
    sample.pred_instances = instances
    return sample


def serve(image_path: str, model: str, runtime: str = 'onnxruntime',
          config: Optional[str] = None, precision: str = 'f32') -> Prediction:
    """Runs the deployed ``model`` (an ONNX file or a deployment work dir) with ``runtime``
    on the image at ``image_path``.

    Args:
        image_path (str): The image (any format OpenCV reads).
        model (str): An .onnx file of export_onnx.py, or the work dir of ``python -m mmhire
            deploy``.
        runtime (str): ``'onnxruntime'``, ``'openvino'`` or ``'sdk'`` (mmdeploy's SDK, which
            takes a work dir). Defaults to ``'onnxruntime'``.
        config (str, optional): The model config, for an ONNX file without a contract.
        precision (str): OpenVINO's inference precision, ``'f32'`` (default) or ``'bf16'``.

    Returns:
        Prediction: the library's data sample at the image's size, ready to draw.
    """
    from mmhire.apis.inference import _read_rgb

    if runtime not in RUNTIMES:
        raise ServeError(f'runtime {runtime!r}: choose one of {", ".join(RUNTIMES)}')
    onnx_path, work_dir = locate(model)
    try:  # the file's header is read once: its contract, then its input axes
        header = load_onnx_header(onnx_path)
    except ValueError as error:
        raise ServeError(str(error)) from None
    contract = load_contract(onnx_path, config, header)
    try:
        image = _read_rgb(image_path)
    except (FileNotFoundError, ValueError) as error:
        raise ServeError(f'{error}: give an image file that OpenCV reads (JPEG, PNG, ...)') \
            from None
    meta = {k: contract[k] for k in ('classes', 'palette') if contract.get(k)}
    if 'palette' in meta:  # colours as tuples: the visualizers take a list for several
        meta['palette'] = [tuple(colour) for colour in meta['palette']]
    if runtime == 'sdk':
        from .sdk import sdk_predict
        if work_dir is None:
            raise ServeError(f'{model} is not a deployment work dir ({", ".join(SDK_FILES)} '
                             'missing): mmdeploy\'s SDK serves the work dir of `python -m '
                             'mmhire deploy`; serve an .onnx file with --runtime onnxruntime '
                             'or openvino')
        sample = sdk_predict(contract, work_dir, image)
    else:
        if runtime == 'onnxruntime':
            run = onnxruntime_model(onnx_path)
        else:  # mmdeploy's OpenVINO model where its conversion wrote one, else the ONNX file
            xml = osp.join(osp.dirname(onnx_path), 'end2end.xml')
            run = openvino_model(xml if osp.isfile(xml) else onnx_path, precision,
                                 onnx_input_axes(header))
        x, sample = preprocess(contract, image_path)
        sample = to_sample(contract, run(x), sample)
    return Prediction(contract['library'], sample, meta, image)


def describe(prediction: Prediction, score_thr: float = 0.3, top: int = 10) -> List[str]:
    """Lines that say what ``prediction`` holds: the five best classes, the classes of a
    class map with their share of the pixels, or the detections scoring at least
    ``score_thr`` (at most ``top``)."""
    from mmhire.apis.inference import class_name
    meta, sample = prediction.dataset_meta, prediction.sample
    if prediction.library == 'mmpretrain':
        scores = sample.pred_score
        order = scores.argsort(descending=True)[:5].tolist()
        return [f'{class_name(meta, i)}: {float(scores[i]):.4f}' for i in order]
    if prediction.library == 'mmseg':
        classes = sample.pred_sem_seg.data[0]
        labels, counts = classes.unique(return_counts=True)
        order = counts.argsort(descending=True)
        return [f'{class_name(meta, int(labels[i]))}: {float(counts[i]) / classes.numel():.1%} '
                'of the pixels' for i in order.tolist()]
    instances = sample.pred_instances
    order = instances.scores.argsort(descending=True)
    lines = []
    for i in order.tolist()[:top]:
        if float(instances.scores[i]) < score_thr:
            break
        box = ', '.join(f'{v:.1f}' for v in instances.bboxes[i].tolist())
        lines.append(f'{class_name(meta, int(instances.labels[i]))}: '
                     f'{float(instances.scores[i]):.4f} at ({box})')
    return lines or [f'no detection scores {score_thr} or more']


__all__ = ['Prediction', 'RUNTIMES', 'ServeError', 'describe', 'load_contract', 'locate',
           'onnx_input_axes', 'onnxruntime_model', 'openvino_model', 'preprocess', 'serve',
           'to_sample']

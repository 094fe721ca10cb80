"""The input contract of an exported model: what an image must become before the graph takes
it, and what the graph gives back, written into the ONNX file's metadata.

An exported graph takes a float32 NCHW tensor, not an image. Which one (the channel order,
the mean and std subtracted and divided, the padding multiple, the test pipeline's resize)
comes from the model config's data preprocessor and test pipeline; this module writes them
as JSON under the metadata key :data:`CONTRACT_KEY` (``onnx.ModelProto.metadata_props``,
which ONNX Runtime shows as ``session.get_modelmeta().custom_metadata_map`` and OpenVINO as
``model.get_rt_info()['framework']``), for :mod:`tools/deployment/serve.py` and for any
server written in another language.

Fields (``format`` 1):

- ``library``: mmpretrain, mmseg or mmdet; ``task``: classification, segmentation (a class
  map), segmentation-logits (class scores), detection, instance-segmentation or backbone;
- ``input``: ``name``, ``layout`` (NCHW), ``dtype``, ``channel_order`` (RGB or BGR, of the
  tensor), ``value_range`` (0-255 before normalisation), ``mean`` and ``std`` (per channel,
  in ``channel_order``), ``normalized_in_graph`` (when true, feed 0-255 values; the graph
  subtracts and divides), ``size_divisor`` and ``pad_value`` (pad bottom and right to a
  multiple, 1: no padding), ``min_size`` (HireMLP's smallest input side);
- ``outputs``: each output's name and what it holds;
- ``classes`` and ``palette``: the class names and colours, where the checkpoint (what the
  training saved), the config or its dataset class states them;
- ``data_preprocessor``, ``test_pipeline`` and the model's ``test_cfg``: the config's own,
  for OpenMMLab code that rebuilds the preprocessing and postprocessing exactly
  (``serve.py`` does); ``align_corners`` of a segmentor's resize.
"""
import json
from typing import Any, Dict, List, Optional

from mmengine.config import Config, ConfigDict

#: The metadata key the contract is stored under.
CONTRACT_KEY = 'mmhire.input_contract'
#: The contract's format version.
CONTRACT_FORMAT = 1
#: Each library's data preprocessor type, where the config does not name one.
PREPROCESSOR_TYPES = {'mmpretrain': 'ClsDataPreprocessor', 'mmseg': 'SegDataPreProcessor',
                      'mmdet': 'DetDataPreprocessor'}
#: Pipeline steps that read annotations: a served image has none.
ANNOTATION_STEPS = ('LoadAnnotations', )

OUTPUTS = {
    'classification': {'scores': 'class probabilities (batch, classes): the softmax of the '
                       "head's logits (a sigmoid for multi-label heads), as mmpretrain's "
                       'pred_score'},
    'segmentation': {'classes': 'the class of every pixel (batch, 1, height, width), int64, '
                     "at the input's size (padding included)"},
    'segmentation-logits': {'logits': 'the class scores of every pixel (batch, classes, '
                            "height, width), at the input's size (padding included): crop "
                            "the padding, resize them to the image's size (bilinear, "
                            "align_corners as stated), then take the best class"},
    'backbone': {'out{i}': 'the feature map of stage i (batch, channels, height / 2^(i+2), '
                 'width / 2^(i+2))'},
    'detection': {
        'dets': "boxes x1, y1, x2, y2 and score (batch, n, 5), in the input's pixels",
        'labels': 'class index of each box (batch, n)'},
    'instance-segmentation': {
        'dets': "boxes x1, y1, x2, y2 and score (batch, n, 5), in the input's pixels",
        'labels': 'class index of each box (batch, n)',
        'masks': 'mask probabilities of each box (batch, n, h, w), in the box; paste them '
                 "into the image with mmdet's _do_paste_mask and threshold at the config's "
                 'mask_thr_binary'},
}


def _plain(value: Any) -> Any:
    """Config values as plain JSON types (ConfigDicts as dicts, tuples as lists)."""
    if isinstance(value, (dict, ConfigDict)):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, 'tolist'):
        return value.tolist()
    return value


def data_preprocessor_cfg(cfg: Config, library: str) -> dict:
    """The model's data preprocessor config, with its type (mmpretrain's configs keep it at
    the top level, mmdet's and mmseg's in ``model``)."""
    pre = cfg.get('model', {}).get('data_preprocessor') or cfg.get('data_preprocessor') or {}
    pre = dict(_plain(pre))
    pre.setdefault('type', PREPROCESSOR_TYPES[library])
    return pre


def test_pipeline_cfg(cfg: Config) -> List[dict]:
    """The config's test pipeline without its annotation steps."""
    pipeline = (cfg.get('test_dataloader', {}).get('dataset', {}).get('pipeline')
                or cfg.get('test_pipeline') or [])
    return [_plain(step) for step in pipeline
            if str(step.get('type', '')).split('.')[-1] not in ANNOTATION_STEPS]


def dataset_meta(cfg: Config, library: str, checkpoint: Optional[str] = None) -> dict:
    """The ``classes`` and ``palette`` of the model: from the checkpoint's meta (what the
    training saved), else the config's test set (its ``metainfo`` over its dataset class's
    ``METAINFO``); empty where none states them."""
    from importlib import import_module

    meta: dict = {}
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    if isinstance(dataset.get('type'), str):
        try:
            import_module(f'{library}.datasets')
            registered = import_module(f'{library}.registry').DATASETS.get(dataset['type'])
            meta.update(getattr(registered, 'METAINFO', None) or {})
        except ImportError:
            pass
    meta.update(dataset.get('metainfo') or {})
    if checkpoint:
        from mmhire.utils.checkpoint import safe_load
        saved = safe_load(checkpoint)
        meta.update(((saved.get('meta') or {}) if isinstance(saved, dict) else {})
                    .get('dataset_meta') or {})
    return {key: _plain(meta[key]) for key in ('classes', 'palette') if meta.get(key)}


def output_descriptions(task: str, names: List[str]) -> Dict[str, str]:
    """Each output's name and what it holds, for ``task``'s outputs named ``names`` (in the
    order of :data:`OUTPUTS`; a backbone's by stage)."""
    described = list(OUTPUTS[task].values())
    if task == 'backbone':
        return {name: described[0].format(i=i) for i, name in enumerate(names)}
    return dict(zip(names, described))


def input_contract(cfg: Config, library: str, task: str, normalized_in_graph: bool = False,
                   checkpoint: Optional[str] = None,
                   output_names: Optional[List[str]] = None) -> Dict[str, Any]:
    """The contract of a model of ``cfg`` (with the weights of ``checkpoint``, whose saved
    class names it records) exported for ``task`` with outputs ``output_names`` (by default
    those of :data:`OUTPUTS`)."""
    from mmhire.models.backbones.hire_mlp import MIN_INPUT_SIZE

    if task not in OUTPUTS:
        raise ValueError(f'task {task!r}: choose one of {", ".join(OUTPUTS)}')
    pre = data_preprocessor_cfg(cfg, library)
    rgb = bool(pre.get('to_rgb') or pre.get('bgr_to_rgb'))
    if library == 'mmseg':
        divisor = (pre.get('test_cfg') or {}).get('size_divisor') or 1
    else:
        divisor = pre.get('pad_size_divisor', 1)
    mean, std = pre.get('mean'), pre.get('std')
    names = output_names or (['out0', 'out1', 'out2', 'out3'] if task == 'backbone'
                             else list(OUTPUTS[task]))
    meta = dataset_meta(cfg, library, checkpoint) if task != 'backbone' else {}
    return dict(
        format=CONTRACT_FORMAT,
        library=library,
        task=task,
        input=dict(name='input', layout='NCHW', dtype='float32',
                   channel_order='RGB' if rgb else 'BGR', value_range='0-255',
                   mean=mean or [0., 0., 0.], std=std or [1., 1., 1.],
                   normalized_in_graph=bool(normalized_in_graph),
                   size_divisor=int(divisor), pad_value=pre.get('pad_value', 0),
                   min_size=MIN_INPUT_SIZE),
        outputs=output_descriptions(task, names),
        classes=meta.get('classes'),
        palette=meta.get('palette'),
        data_preprocessor=pre,
        test_pipeline=test_pipeline_cfg(cfg),
        test_cfg=_plain(cfg.get('model', {}).get('test_cfg') or {}),
        align_corners=bool((cfg.get('model', {}).get('decode_head') or {}).get(
            'align_corners', False)) if library == 'mmseg' else None,
    )


def write_contract(path: str, contract: Dict[str, Any]) -> None:
    """Stores ``contract`` in the metadata of the ONNX file at ``path``, in place: call it on
    a file that is still being written (a partial file of
    :func:`mmhire.utils.fileio.write_atomic`, a staging folder), which is published whole."""
    from mmhire.utils.compat import import_runtime

    onnx = import_runtime('onnx', 'writing an ONNX file\'s metadata')
    model = onnx.load(path)
    kept = [p for p in model.metadata_props if p.key != CONTRACT_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key, entry.value = CONTRACT_KEY, json.dumps(contract, sort_keys=True)
    onnx.save(model, path)


def load_onnx_header(path: str):
    """The ONNX file at ``path`` without its external weights (graph, inputs, outputs and
    metadata), or a ValueError that names the file."""
    from mmhire.utils.compat import import_runtime

    onnx = import_runtime('onnx', 'reading an ONNX file')
    try:
        return onnx.load(path, load_external_data=False)
    except Exception as error:  # noqa: BLE001 (onnx raises several kinds for a bad file)
        raise ValueError(f'{path!r} is not a readable ONNX file ({error}); give the .onnx '
                         'file that export_onnx.py or `python -m mmhire deploy` wrote') from None


def read_contract(path_or_model) -> Optional[Dict[str, Any]]:
    """The contract stored in an ONNX file (its path, or the model :func:`load_onnx_header`
    read), or None when it has none."""
    model = load_onnx_header(path_or_model) if isinstance(path_or_model, str) \
        else path_or_model
    for prop in model.metadata_props:
        if prop.key == CONTRACT_KEY:
            return json.loads(prop.value)
    return None


__all__ = ['CONTRACT_FORMAT', 'CONTRACT_KEY', 'OUTPUTS', 'data_preprocessor_cfg',
           'dataset_meta', 'input_contract', 'load_onnx_header', 'output_descriptions',
           'read_contract', 'test_pipeline_cfg', 'write_contract']

"""Deployment: HireMLP models as ONNX files, with or without mmdeploy, checked against PyTorch.

- :mod:`.export`: one ONNX file for every input size from a backbone, a classifier or a whole
  segmentor (TorchScript or dynamo exporter, any supported torch), and its check in ONNX
  Runtime.
- :mod:`.deploy`: mmdeploy's export of an mmhire model config and checkpoint into a work dir
  (``end2end.onnx`` and the SDK's meta files), every check run before anything is written.
- :mod:`.check`: the deployed model against PyTorch (class scores, class maps, detections).
- :mod:`.mmdeploy_rewriters`: mmhire's rewrites registered with mmdeploy.
- :mod:`.any_size`: forwards of mmseg modules that take every size from the tensor, which the
  rewrites and the whole-segmentor export share.

The command-line faces are ``tools/deployment/`` and ``python -m mmhire deploy``. Nothing here
is imported by ``import mmhire``, except the rewrites where mmdeploy is already imported.
"""

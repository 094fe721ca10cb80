# ONNX export as mmdeploy 1.3 does it for ONNX Runtime: the TorchScript exporter at opset 11,
# one input called `input`, written to end2end.onnx in the work dir.
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=11,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['output'],
    input_shape=None,
    optimize=True)
backend_config = dict(type='onnxruntime')

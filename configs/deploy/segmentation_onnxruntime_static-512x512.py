# mmseg segmentor -> ONNX Runtime at a fixed 512x512 input (input_shape is W, H), the
# ADE20K crop size of mmhire's segmentation configs.
_base_ = ['./_base_/onnxruntime.py']
codebase_config = dict(
    type='mmseg',
    task='Segmentation',
    with_argmax=True,
    module=['mmhire', 'mmhire.apis.mmdeploy_rewriters'])
onnx_config = dict(output_names=['output'], input_shape=[512, 512])

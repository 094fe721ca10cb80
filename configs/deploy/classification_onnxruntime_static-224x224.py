# mmpretrain classifier -> ONNX Runtime at a fixed 224x224 input (input_shape is W, H).
_base_ = ['./_base_/onnxruntime.py']
codebase_config = dict(
    type='mmpretrain',
    task='Classification',
    module=['mmhire', 'mmhire.apis.mmdeploy_rewriters'])
onnx_config = dict(output_names=['output'], input_shape=[224, 224])

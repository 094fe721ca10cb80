# mmpretrain classifier -> ONNX Runtime; one file for every batch size and image size.
_base_ = ['./_base_/onnxruntime.py']
codebase_config = dict(
    type='mmpretrain',
    task='Classification',
    module=['mmhire', 'mmhire.apis.mmdeploy_rewriters'])
onnx_config = dict(
    output_names=['output'],
    dynamic_axes=dict(
        input={0: 'batch', 2: 'height', 3: 'width'},
        output={0: 'batch'}))

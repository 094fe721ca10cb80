# mmpretrain classifiers: the class scores (softmax) as the one output.
_base_ = ['./onnxruntime.py']
codebase_config = dict(
    type='mmpretrain',
    task='Classification',
    module=['mmhire', 'mmhire.deployment.mmdeploy_rewriters'])
onnx_config = dict(output_names=['output'])

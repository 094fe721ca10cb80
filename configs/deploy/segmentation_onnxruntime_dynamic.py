# mmseg segmentor (Semantic FPN, UperNet) -> ONNX Runtime, any batch and image size; the
# output is the class map (argmax in the graph).
_base_ = ['./_base_/onnxruntime.py']
codebase_config = dict(
    type='mmseg',
    task='Segmentation',
    with_argmax=True,
    module=['mmhire', 'mmhire.apis.mmdeploy_rewriters'])
onnx_config = dict(
    output_names=['output'],
    dynamic_axes=dict(
        input={0: 'batch', 2: 'height', 3: 'width'},
        output={0: 'batch', 2: 'height', 3: 'width'}))

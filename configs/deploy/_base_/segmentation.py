# mmseg segmentors (Semantic FPN, UperNet): the class map (argmax in the graph) as the output.
_base_ = ['./onnxruntime.py']
codebase_config = dict(
    type='mmseg',
    task='Segmentation',
    with_argmax=True,
    module=['mmhire', 'mmhire.deployment.mmdeploy_rewriters'])
onnx_config = dict(output_names=['output'])

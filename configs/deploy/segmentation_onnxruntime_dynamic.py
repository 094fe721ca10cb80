# mmseg segmentor (Semantic FPN, UperNet) -> ONNX Runtime, any batch and image size.
_base_ = ['./_base_/segmentation.py']
onnx_config = dict(
    dynamic_axes=dict(
        input={0: 'batch', 2: 'height', 3: 'width'},
        output={0: 'batch', 2: 'height', 3: 'width'}))

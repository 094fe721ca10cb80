# mmpretrain classifier -> ONNX Runtime at a fixed 224x224 input (input_shape is W, H).
_base_ = ['./_base_/classification.py']
onnx_config = dict(input_shape=[224, 224])

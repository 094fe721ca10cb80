# mmseg segmentor -> ONNX Runtime at a fixed 512x512 input (input_shape is W, H), the
# ADE20K crop size of mmhire's segmentation configs.
_base_ = ['./_base_/segmentation.py']
onnx_config = dict(input_shape=[512, 512])

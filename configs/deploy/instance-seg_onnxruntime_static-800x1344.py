# mmdet (Cascade) Mask R-CNN -> ONNX Runtime at a fixed 800x1344 input (H x W;
# input_shape is W, H): the padded size of COCO's 1333x800 keep-ratio resize, landscape.
_base_ = ['./_base_/instance_seg.py']
onnx_config = dict(input_shape=[1344, 800])

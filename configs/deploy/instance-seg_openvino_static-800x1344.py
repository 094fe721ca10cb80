# mmdet Mask R-CNN / Cascade Mask R-CNN -> OpenVINO at a fixed 800x1344 input (input_shape is
# W, H: 1344 wide, 800 high).
_base_ = ['./_base_/instance_seg.py']
onnx_config = dict(input_shape=[1344, 800])
backend_config = dict(
    type='openvino',
    # float32 weights: the Model Optimizer of OpenVINO 2023 stores them in float16 by default
    mo_options=dict(args={'--compress_to_fp16': False}),
    model_inputs=[dict(opt_shapes=dict(input=[1, 3, 800, 1344]))])

# mmdet Mask R-CNN / Cascade Mask R-CNN -> OpenVINO at a fixed 800x1344 input (H x W).
_base_ = ['./instance-seg_onnxruntime_static-800x1344.py']
backend_config = dict(
    type='openvino',
    # float32 weights: the Model Optimizer of OpenVINO 2023 stores them in float16 by default
    mo_options=dict(args={'--compress_to_fp16': False}),
    model_inputs=[dict(opt_shapes=dict(input=[1, 3, 800, 1344]))])

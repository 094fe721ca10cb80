# mmseg segmentor -> OpenVINO at a fixed 512x512 input.
_base_ = ['./segmentation_onnxruntime_static-512x512.py']
backend_config = dict(
    type='openvino',
    # float32 weights: the Model Optimizer of OpenVINO 2023 stores them in float16 by default
    mo_options=dict(args={'--compress_to_fp16': False}),
    model_inputs=[dict(opt_shapes=dict(input=[1, 3, 512, 512]))])

# mmseg segmentor -> OpenVINO through mmdeploy's Model Optimizer step: the ONNX file of the
# dynamic ONNX Runtime config, converted at 1x3x512x512; mmhire's checks and serve.py reshape
# the OpenVINO model to the size of each input.
_base_ = ['./segmentation_onnxruntime_dynamic.py']
backend_config = dict(
    type='openvino',
    # float32 weights: the Model Optimizer of OpenVINO 2023 stores them in float16 by default
    mo_options=dict(args={'--compress_to_fp16': False}),
    model_inputs=[dict(opt_shapes=dict(input=[1, 3, 512, 512]))])

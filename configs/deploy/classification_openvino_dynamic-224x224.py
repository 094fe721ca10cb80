# mmpretrain classifier -> OpenVINO (end2end.xml/.bin) through mmdeploy's Model Optimizer step.
# The ONNX file has dynamic batch, height and width; the OpenVINO model is converted at
# 1x3x224x224 and mmdeploy's OpenVINO wrapper reshapes it to the size of each input.
_base_ = ['./_base_/classification.py']
onnx_config = dict(
    dynamic_axes=dict(
        input={0: 'batch', 2: 'height', 3: 'width'},
        output={0: 'batch'}))
backend_config = dict(
    type='openvino',
    # float32 weights: the Model Optimizer of OpenVINO 2023 stores them in float16 by default
    mo_options=dict(args={'--compress_to_fp16': False}),
    model_inputs=[dict(opt_shapes=dict(input=[1, 3, 224, 224]))])

# mmdet Mask R-CNN / Cascade Mask R-CNN -> OpenVINO through mmdeploy's Model Optimizer step:
# the ONNX file has dynamic height and width; the OpenVINO model is converted at 1x3x800x1344
# and mmdeploy's OpenVINO wrapper reshapes it to the size of each input.
_base_ = ['./_base_/instance_seg.py']
onnx_config = dict(
    dynamic_axes=dict(
        input={0: 'batch', 2: 'height', 3: 'width'},
        dets={0: 'batch', 1: 'num_dets'},
        labels={0: 'batch', 1: 'num_dets'},
        masks={0: 'batch', 1: 'num_dets', 2: 'height', 3: 'width'}))
backend_config = dict(
    type='openvino',
    # float32 weights: the Model Optimizer of OpenVINO 2023 stores them in float16 by default
    mo_options=dict(args={'--compress_to_fp16': False}),
    model_inputs=[dict(opt_shapes=dict(input=[1, 3, 800, 1344]))])

# mmdet instance segmentation (Mask R-CNN, Cascade Mask R-CNN) as mmdeploy's end2end model:
# boxes with scores, labels and per-box masks (28x28, pasted into the image by the SDK or
# mmdeploy's Python wrapper), NMS in the graph.
_base_ = ['./onnxruntime.py']
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',
    model_type='end2end',
    module=['mmhire', 'mmhire.deployment.mmdeploy_rewriters'],
    post_processing=dict(
        score_threshold=0.05,
        confidence_threshold=0.005,
        iou_threshold=0.5,
        max_output_boxes_per_class=200,
        pre_top_k=5000,
        keep_top_k=100,
        background_label_id=-1,
        export_postprocess_mask=False))
onnx_config = dict(output_names=['dets', 'labels', 'masks'])

# Cascade Mask R-CNN (4conv1fc GIoU box heads) + FPN, Hire-MLP-small, COCO 3x, multi-scale
# training with crops, mixed precision.
# Source: the paper's COCO headline (51.7 box AP, 44.8 mask AP) does not come with a recipe and
# the release has no detection code; this is the recipe that number most probably comes from,
# the Swin/ConvNeXt Cascade Mask R-CNN 3x with multi-scale training and crops, on mmdet's
# configs/convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py.
# Drop path 0.3 is Swin's for the model of about the same size (the paper gives none).
# Batch: 8 GPUs x 2 images = total batch 16. Schedule: 36 epochs (steps at 27 and 33).
# Backbone: checkpoints/hire_s_in1k.pth (the released ImageNet weights, converted; see the
# README).
_base_ = './_base_/cascade_mask_rcnn_hire_coco_ms3x.py'

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint='checkpoints/hire_s_in1k.pth')))

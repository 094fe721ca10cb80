# Mask R-CNN + FPN, Hire-MLP-tiny, COCO 1x.
# Source: the release has no detection code, and the paper gives no Mask R-CNN setting; this
# follows mmdet's Swin Mask R-CNN 1x (configs/swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py: AdamW
# lr 1e-4, weight decay 0.05, no decay on norms). Drop path 0.1 is ours.
# Batch: 8 GPUs x 2 images = total batch 16. Schedule: 12 epochs (steps at 8 and 11).
# Backbone: checkpoints/hire_t_in1k.pth (the released ImageNet weights, converted; see the
# README).
_base_ = './_base_/mask_rcnn_hire_coco_1x.py'

model = dict(
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='checkpoints/hire_t_in1k.pth')))

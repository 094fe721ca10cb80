# Mask R-CNN + FPN, Hire-MLP-base, COCO 1x: 8 GPUs x 2 images = total batch 16, 12 epochs,
# AdamW lr 1e-4. Backbone from checkpoints/hire_b_in1k.pth (see the README to make it).
_base_ = './_base_/mask_rcnn_hire_coco_1x.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint='checkpoints/hire_b_in1k.pth')))

# Mask R-CNN + FPN, Hire-MLP-tiny, COCO 1x: 8 GPUs x 2 images = total batch 16, 12 epochs,
# AdamW lr 1e-4. Backbone from checkpoints/hire_t_in1k.pth (see the README to make it).
_base_ = './_base_/mask_rcnn_hire_coco_1x.py'

model = dict(
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='checkpoints/hire_t_in1k.pth')))

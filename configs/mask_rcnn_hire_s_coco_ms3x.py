# Mask R-CNN + FPN, Hire-MLP-small, COCO 3x with multi-scale training (shorter side 480-800, no
# crops).
# Source: as mask_rcnn_hire_s_coco.py (mmdet's Swin Mask R-CNN settings; nothing here is from
# the paper or the release), with mmdet's 3x multi-scale schedule.
# Batch: 8 GPUs x 2 images = total batch 16. Schedule: 36 epochs (steps at 27 and 33).
# Backbone: checkpoints/hire_s_in1k.pth (the released ImageNet weights, converted; see the
# README).
_base_ = './mask_rcnn_hire_s_coco.py'

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=[(1333, 480), (1333, 800)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
train_cfg = dict(max_epochs=36)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1),
]

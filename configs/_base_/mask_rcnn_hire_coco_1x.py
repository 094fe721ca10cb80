# COCO instance segmentation, 1x schedule (12 epochs, steps at 8 and 11), with the AdamW
# settings MLP/transformer backbones use for Mask R-CNN: lr 1e-4 at a total batch of 16,
# weight decay 0.05, no decay on norm layers. COCO lives under data/coco.
_base_ = [
    './models/mask_rcnn_hire_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Checkpoints are written aside and renamed into place (a killed run never leaves a broken
# one), and they carry the random states, so that --resume continues exactly.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = [dict(type='TrainingStateHook')]

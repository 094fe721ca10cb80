# The DeiT-style ImageNet recipe of the Hire-MLP release, on mmpretrain's own ImageNet
# pipeline (RandomResizedCrop + flip + RandAugment rand-m9-mstd0.5-inc1 + random erasing 0.25,
# bicubic; evaluation resizes the short edge to 256 and centre-crops 224). Colour jitter 0.4
# is part of the release's arguments but timm skips it when RandAugment is on, so it is absent.
# Each model config sets the batch per GPU, `lr` and `auto_scale_lr` for its total batch.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]

# Repeated augmentation, as in the release.
train_dataloader = dict(sampler=dict(_delete_=True, type='RepeatAugSampler', shuffle=True))

# AdamW, eps 1e-8, wd 0.05, no decay on biases and norms (mmpretrain's Swin schedule base).
optim_wrapper = dict(optimizer=dict(type='AdamW', eps=1e-8, weight_decay=0.05))

# 20 warm-up epochs from 1e-6, cosine to 1e-5 at epoch 300, then 10 cool-down epochs at
# 1e-5 (no scheduler is active after epoch 300, so the learning rate stays there). The warm-up
# starts at 1e-6 / lr, so each model config writes `param_scheduler` for its own lr.
train_cfg = dict(by_epoch=True, max_epochs=310, val_interval=1)

# Checkpoints are written aside and renamed into place (a killed run never leaves a broken
# one), and they carry the random states, so that --resume continues exactly.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = [dict(type='TrainingStateHook')]

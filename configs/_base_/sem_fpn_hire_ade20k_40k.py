# ADE20K semantic segmentation as the release trains Semantic FPN
# (mmseg-v0.11/configs/sem_fpn/hire_mlp_small_512x512_ade20k.py): 512x512 crops, 4 images per
# GPU on 8 GPUs (total 32) for 40k iterations, AdamW lr 2e-4, weight decay 0.05 on every
# parameter (no paramwise_cfg in the release), poly power 0.9 to 0 with no warm-up:
# lr(t) = 2e-4 * (1 - t / 40000) ** 0.9 as mmcv 1.x computed it (mmengine's schedulers reach
# their last value at `end - 1`, hence the end 40001).
# Whole-image single-scale test. ADE20K lives under data/ade/ADEChallengeData2016.
_base_ = [
    './models/fpn_hire.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/schedules/schedule_40k.py',
    'mmseg::_base_/default_runtime.py',
]

crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size))
train_dataloader = dict(batch_size=4)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=40001, by_epoch=False),
]
train_cfg = dict(max_iters=40000)
auto_scale_lr = dict(enable=False, base_batch_size=32)

# Checkpoints are written aside and renamed into place (a killed run never leaves a broken
# one), and they carry the random states, so that --resume continues exactly.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = [dict(type='TrainingStateHook')]

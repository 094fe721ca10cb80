# ADE20K semantic segmentation with 512x512 crops for 160k iterations, with the release's
# optimisation: AdamW lr 1.2e-4, weight decay 0.01 (none on norm layers), 800 iterations of
# linear warm-up, then poly decay with power 1.0. ADE20K lives under data/ade/ADEChallengeData2016.
_base_ = [
    './models/upernet_hire.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    'mmseg::_base_/default_runtime.py',
]

crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size))
train_dataloader = dict(batch_size=4)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1.2e-4, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=800),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=800, end=160000, by_epoch=False),
]
auto_scale_lr = dict(enable=False, base_batch_size=32)

# Checkpoints are written aside and renamed into place (a killed run never leaves a broken
# one), and they carry the random states, so that --resume continues exactly.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = [dict(type='TrainingStateHook')]

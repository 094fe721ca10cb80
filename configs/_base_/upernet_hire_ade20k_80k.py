# ADE20K semantic segmentation as the release trains UperNet
# (mmseg-v0.11/configs/upernet/hire_mlp_small_512x512_ade20k.py): 512x512 crops, 4 images per
# GPU on 8 GPUs (total 32) for 80k iterations, which is as many images as the usual
# 160k x 16. AdamW lr 1.2e-4, betas (0.9, 0.999), weight decay 0.01 on every parameter (the
# release sets no paramwise_cfg, so norm layers decay too); linear warm-up over the first 800
# iterations from 1e-6 of the poly value, poly power 1.0 to 0 counted from iteration 0. The
# release's mmcv 1.x computed lr(t) = 1.2e-4 * (1 - t / 80000) * w(t), with the warm-up factor
# w(t) = 1 - (1 - t / 800) * (1 - 1e-6) for t < 800: two schedulers that both start at 0 give
# the same product, and mmengine's schedulers reach their last value at `end - 1`, hence the
# ends 801 and 80001. Whole-image single-scale test. ADE20K lives under
# data/ade/ADEChallengeData2016.
_base_ = [
    './models/upernet_hire.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/schedules/schedule_80k.py',
    'mmseg::_base_/default_runtime.py',
]

crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size))
train_dataloader = dict(batch_size=4)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1.2e-4, betas=(0.9, 0.999), weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=801),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=0, end=80001, by_epoch=False),
]
train_cfg = dict(max_iters=80000)
auto_scale_lr = dict(enable=False, base_batch_size=32)

# Checkpoints are written aside and renamed into place (a killed run never leaves a broken
# one), and they carry the random states, so that --resume continues exactly.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = [dict(type='TrainingStateHook')]

# Your own mmseg project: mmseg's Semantic FPN and ADE20K configs with a Hire-MLP-tiny
# backbone. Total batch 16 (8 GPUs x 2 images), 40k iterations, 512x512 crops, AdamW lr 2e-4,
# weight decay 0.05, poly decay with power 0.9.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_40k.py'
]
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='HireMLP',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/hire_t_in1k.pth',
                      prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 320, 512]),
    decode_head=dict(num_classes=150))

train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=40000, by_epoch=False),
]
auto_scale_lr = dict(enable=False, base_batch_size=16)

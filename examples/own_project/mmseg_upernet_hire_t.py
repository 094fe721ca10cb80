# Your own mmseg project: mmseg's UperNet and ADE20K configs with a Hire-MLP-tiny backbone.
# mmseg's schedule: total batch 16 (8 GPUs x 2 images), 160k iterations, 512x512 crops,
# with the optimiser of mmhire's UperNet configs (AdamW lr 1.2e-4, weight decay 0.01, 800
# warm-up iterations, then poly decay). mmhire's own UperNet configs run the release's
# 80k iterations at total batch 32 instead.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_160k.py'
]
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)   # several GPU processes
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,      # mmseg's base names ResNet-50 weights here: HireMLP has its own
    backbone=dict(
        _delete_=True,
        type='HireMLP',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/hire_t_in1k.pth',
                      prefix='backbone.')),
    decode_head=dict(in_channels=[64, 128, 320, 512], num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=320, num_classes=150, norm_cfg=norm_cfg))

train_dataloader = dict(batch_size=2)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1.2e-4, betas=(0.9, 0.999), weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=800),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=800, end=160000, by_epoch=False),
]
auto_scale_lr = dict(enable=False, base_batch_size=16)

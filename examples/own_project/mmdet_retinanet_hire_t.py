# Your own mmdet project: mmdet's RetinaNet 1x config with a Hire-MLP-tiny backbone feeding the
# FPN from strides 8, 16 and 32. Total batch 16 (8 GPUs x 2 images), 12 epochs, AdamW lr 1e-4.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='HireMLP',
        arch='tiny',
        out_indices=(1, 2, 3),
        drop_path_rate=0.1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/hire_t_in1k.pth',
                      prefix='backbone.')),
    neck=dict(in_channels=[128, 320, 512], start_level=0))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.))
auto_scale_lr = dict(base_batch_size=16)

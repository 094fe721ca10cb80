# Mask R-CNN + FPN with a HireMLP backbone (SyncBN across GPUs; tools/train.py turns it into
# plain BN when it runs in a single process or on the CPU).
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='HireMLP',
        arch='tiny',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/hire_t_in1k.pth',
                      prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 320, 512]))

# Semantic FPN with a HireMLP backbone, as the release builds it: FPN with 256 channels and 4
# outputs (strides 4 to 32), FPN head with 128 channels, no auxiliary head (SyncBN across GPUs).
_base_ = 'mmseg::_base_/models/fpn_r50.py'
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='HireMLP',
        arch='tiny',
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/hire_t_in1k.pth',
                      prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 320, 512], out_channels=256, num_outs=4),
    decode_head=dict(channels=128, num_classes=150))

# UperNet with a HireMLP backbone and an FCN auxiliary head on stage 2 (SyncBN across GPUs).
_base_ = 'mmseg::_base_/models/upernet_r50.py'
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
    decode_head=dict(in_channels=[64, 128, 320, 512], channels=512, num_classes=150),
    auxiliary_head=dict(in_channels=320, in_index=2, num_classes=150,
                        loss_decode=dict(loss_weight=0.4)))

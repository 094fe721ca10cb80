# ImageNet classifier: HireMLP + global average pooling + linear head (the released layout).
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='HireMLP', arch='tiny', drop_path_rate=0., out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
        topk=(1, 5)),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
)

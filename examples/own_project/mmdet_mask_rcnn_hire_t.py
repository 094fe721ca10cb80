# Your own mmdet project: mmdet's Mask R-CNN 1x config with a Hire-MLP-tiny backbone.
# Total batch 16 (8 GPUs x 2 images), 12 epochs, AdamW lr 1e-4 as in mmhire's Mask R-CNN
# configs. To build on mmhire's own configs instead, inherit them by path, e.g.
# _base_ = '<mmhire>/configs/mask_rcnn_hire_t_coco.py' (`python -m mmhire configs --paths`
# prints where they are, in a checkout or in the installed package).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='HireMLP',
        arch='tiny',                  # tiny / small / base / large
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),   # several GPU processes
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/hire_t_in1k.pth',
                      prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 320, 512]))             # large: [96, 192, 384, 768]

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.))
auto_scale_lr = dict(base_batch_size=16)

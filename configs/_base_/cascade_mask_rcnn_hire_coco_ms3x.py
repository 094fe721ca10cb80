# COCO instance segmentation with Cascade Mask R-CNN, 3x schedule (36 epochs, steps at 27 and
# 33), multi-scale training with crops (the DETR-style augmentation) and mixed precision: mmdet's
# ConvNeXt config of this recipe, with its backbone swapped for HireMLP. Everything but the
# backbone and the optimiser is mmdet's file as it stands: 4conv1fc box heads with GIoU losses,
# SyncBN in the heads, 1000 warm-up iterations, total batch 16.
# The optimiser is Swin's for this recipe (AdamW lr 1e-4, betas (0.9, 0.999), weight decay
# 0.05, no decay on norm layers): the file's layer-wise learning-rate decay is written for
# ConvNeXt's layer names and does not apply to HireMLP. On a machine without a GPU,
# tools/train.py trains in float32 (mixed precision needs a GPU) unless --amp asks for
# bfloat16 autocast. COCO lives under data/coco.
_base_ = 'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'  # noqa: E501
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='HireMLP',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/hire_t_in1k.pth',
                      prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 320, 512]))

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.))
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Checkpoints are written aside and renamed into place (a killed run never leaves a broken
# one), and they carry the random states, so that --resume continues exactly.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = [dict(type='TrainingStateHook')]

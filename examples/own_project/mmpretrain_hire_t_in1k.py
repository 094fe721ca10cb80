# Your own mmpretrain project: mmpretrain's ImageNet configs (Swin's pipeline and AdamW
# schedule) with a Hire-MLP-tiny classifier. Total batch 1024 (8 GPUs x 128 images), 300
# epochs, AdamW lr 1e-3 as mmpretrain's schedule sets it for that batch.
_base_ = [
    'mmpretrain::_base_/models/resnet50.py',
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

model = dict(
    backbone=dict(_delete_=True, type='HireMLP', arch='tiny', out_indices=(3, )),
    head=dict(in_channels=512))
train_dataloader = dict(batch_size=128)
auto_scale_lr = dict(base_batch_size=1024)

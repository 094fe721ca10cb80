# Hire-MLP-small classifier on ImageNet-1k, 224x224.
# Source: the release's DeiT-style recipe (configs/_base_/hire_mlp_in1k_recipe.py). The release
# gives commands for tiny and base only: small takes tiny's batch, and drop path 0.1 is ours
# (the paper gives none).
# Batch: 8 GPUs x 256 images = total batch 2048. Schedule: 310 epochs (300, then 10 cool-down
# at the final lr).
# AdamW lr 5e-4 x 2048 / 512, drop path 0.1.
_base_ = ['./_base_/models/hire_mlp_cls.py', './_base_/hire_mlp_in1k_recipe.py']

lr = 5e-4 * 2048 / 512
model = dict(
    backbone=dict(arch='small', drop_path_rate=0.1), head=dict(in_channels=512))
train_dataloader = dict(batch_size=256)
optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / lr, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20, end=300,
         T_max=280, convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=2048)

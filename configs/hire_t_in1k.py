# Hire-MLP-tiny classifier on ImageNet-1k, 224x224.
# Source: the release's ImageNet command for tiny (train.py on 8 GPUs, 256 images each, drop
# path 0.0) and its DeiT-style recipe (configs/_base_/hire_mlp_in1k_recipe.py).
# Batch: 8 GPUs x 256 images = total batch 2048. Schedule: 310 epochs (300, then 10 cool-down
# at the final lr).
# AdamW lr 5e-4 x 2048 / 512, drop path 0.0.
_base_ = ['./_base_/models/hire_mlp_cls.py', './_base_/hire_mlp_in1k_recipe.py']

lr = 5e-4 * 2048 / 512
model = dict(
    backbone=dict(arch='tiny', drop_path_rate=0.0), head=dict(in_channels=512))
train_dataloader = dict(batch_size=256)
optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / lr, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20, end=300,
         T_max=280, convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=2048)

# Semantic FPN, Hire-MLP-small, ADE20K, 512x512 crops.
# Source: the release's mmseg-v0.11/configs/sem_fpn/hire_mlp_small_512x512_ade20k.py, every
# setting, drop path 0.1 included.
# Batch: 8 GPUs x 4 images = total batch 32. Schedule: 40k iterations.
# Backbone: checkpoints/hire_s_in1k.pth (the released ImageNet weights, converted; see the
# README).
_base_ = './_base_/sem_fpn_hire_ade20k_40k.py'

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='checkpoints/hire_s_in1k.pth')))

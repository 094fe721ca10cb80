# Semantic FPN, Hire-MLP-base, ADE20K, 512x512 crops.
# Source: the release's Semantic FPN config for small
# (mmseg-v0.11/configs/sem_fpn/hire_mlp_small_512x512_ade20k.py) with the base backbone. The
# release has no base config; drop path 0.2 is the default of the release's base segmentation
# backbone, as 0.1 is small's.
# Batch: 8 GPUs x 4 images = total batch 32. Schedule: 40k iterations.
# Backbone: checkpoints/hire_b_in1k.pth (the released ImageNet weights, converted; see the
# README).
_base_ = './_base_/sem_fpn_hire_ade20k_40k.py'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='checkpoints/hire_b_in1k.pth')))

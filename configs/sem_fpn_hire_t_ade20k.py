# Semantic FPN, Hire-MLP-tiny, ADE20K, 512x512 crops.
# Source: the release's Semantic FPN config for small
# (mmseg-v0.11/configs/sem_fpn/hire_mlp_small_512x512_ade20k.py) with the tiny backbone. The
# release has no tiny config; drop path 0.1 is the default of the release's tiny segmentation
# backbone, as 0.1 is small's.
# Batch: 8 GPUs x 4 images = total batch 32. Schedule: 40k iterations.
# Backbone: checkpoints/hire_t_in1k.pth (the released ImageNet weights, converted; see the
# README).
_base_ = './_base_/sem_fpn_hire_ade20k_40k.py'

model = dict(
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='checkpoints/hire_t_in1k.pth')))

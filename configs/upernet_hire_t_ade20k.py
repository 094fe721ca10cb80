# UperNet + FCN auxiliary head, Hire-MLP-tiny, ADE20K, 512x512 crops.
# Source: the release's UperNet config for small
# (mmseg-v0.11/configs/upernet/hire_mlp_small_512x512_ade20k.py) with the tiny backbone. The
# release has no tiny config, so drop path 0.2 is ours: the release's small config raises its
# backbone's default (0.1) by 0.1, and this does the same to tiny's default (0.1).
# Batch: 8 GPUs x 4 images = total batch 32. Schedule: 80k iterations.
# Backbone: checkpoints/hire_t_in1k.pth (the released ImageNet weights, converted; see the
# README).
_base_ = './_base_/upernet_hire_ade20k_80k.py'

model = dict(
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='checkpoints/hire_t_in1k.pth')))

# UperNet, Hire-MLP-small, ADE20K 512x512: 8 GPUs x 4 images = total batch 32, 160k
# iterations, AdamW lr 1.2e-4. Backbone from checkpoints/hire_s_in1k.pth (see the README).
_base_ = './_base_/upernet_hire_ade20k_160k.py'

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='checkpoints/hire_s_in1k.pth')))

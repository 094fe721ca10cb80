# UperNet, Hire-MLP-tiny, ADE20K 512x512: 8 GPUs x 4 images = total batch 32, 160k
# iterations, AdamW lr 1.2e-4. Backbone from checkpoints/hire_t_in1k.pth (see the README).
_base_ = './_base_/upernet_hire_ade20k_160k.py'

model = dict(
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='checkpoints/hire_t_in1k.pth')))

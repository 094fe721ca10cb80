# Demo: Hire-MLP-tiny classifier on the built-in ImageNet-layout shapes set
# (data/demo/imagenet, 3 classes x 300 images, made by tools/misc/make_demo_data.py), 64x64
# inputs, trained from scratch, AdamW lr 1e-3.
# Source: ../hire_t_in1k.py; only the data (no Mixup/CutMix batch mixing for 3 classes of 100
# images), the schedule and the input size differ.
# Batch: 1 process x 32 images = total batch 32. Schedule: 20 epochs.
_base_ = '../hire_t_in1k.py'

data_root = 'data/demo/imagenet'
model = dict(head=dict(num_classes=3, topk=(1, )), train_cfg=dict(_delete_=True))
data_preprocessor = dict(num_classes=3)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.7, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=73, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root, data_prefix='train',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32,
    num_workers=2,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root, data_prefix='val',
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

lr = 1e-3
max_epochs = 20
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=2,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=2, end=max_epochs,
         T_max=max_epochs - 2, convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=32)
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=5, max_keep_ckpts=2))
randomness = dict(seed=0)

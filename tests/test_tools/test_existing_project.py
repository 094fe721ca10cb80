"""A user's own mmdet / mmseg project: only `custom_imports` and `type='HireMLP'`, trained with
the train script that ships inside the mmdet / mmseg package."""
import os
import subprocess
import sys

import pytest

from mmhire.datasets.demo_data import make_ade_demo, make_coco_demo

MMDET_PROJECT_CONFIG = """
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='HireMLP', arch='tiny', out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[64, 128, 320, 512]),
    roi_head=dict(bbox_head=dict(num_classes=3), mask_head=dict(num_classes=3)))
metainfo = dict(classes=('circle', 'square', 'triangle'))
data = dict(data_root='data/demo/coco/', metainfo=metainfo)
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
    ann_file='annotations/instances_train2017.json', data_prefix=dict(img='train2017/'),
    **data))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False, dataset=dict(
    ann_file='annotations/instances_val2017.json', data_prefix=dict(img='val2017/'), **data))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file='data/demo/coco/annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=1)
"""

MMSEG_PROJECT_CONFIG = """
_base_ = [
    'mmseg::_base_/models/upernet_r50.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_160k.py'
]
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)
norm_cfg = dict(type='BN', requires_grad=True)   # one process: plain BN
crop_size = (64, 64)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(_delete_=True, type='HireMLP', arch='tiny', out_indices=(0, 1, 2, 3),
                  norm_cfg=norm_cfg),
    decode_head=dict(in_channels=[64, 128, 320, 512], num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=320, num_classes=150, norm_cfg=norm_cfg))
data_root = 'data/demo/ade/ADEChallengeData2016'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(128, 64), ratio_range=(1.0, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 64), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=1, val_interval=1)
default_hooks = dict(checkpoint=dict(interval=1))
"""


def library_train_script(library):
    module = __import__(library)
    path = os.path.join(os.path.dirname(module.__file__), '.mim', 'tools', 'train.py')
    assert os.path.isfile(path), f'{library} does not ship tools/train.py'
    return path


@pytest.mark.parametrize('library,config,maker,metric', [
    ('mmdet', MMDET_PROJECT_CONFIG, 'coco', 'coco/bbox_mAP'),
    ('mmseg', MMSEG_PROJECT_CONFIG, 'ade', 'mIoU'),
])
def test_library_train_script_with_custom_imports(tmp_path, library, config, maker, metric):
    if maker == 'coco':
        make_coco_demo(str(tmp_path / 'data/demo/coco'), num_train=2, num_val=1, size=64)
    else:
        make_ade_demo(str(tmp_path / 'data/demo/ade/ADEChallengeData2016'), num_train=2,
                      num_val=1, size=64)
    (tmp_path / 'my_config.py').write_text(config)
    env = dict(os.environ, PYTHONPATH='')  # nothing but the installed packages
    proc = subprocess.run(
        [sys.executable, library_train_script(library), 'my_config.py', '--work-dir', 'out'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert 'HireMLP' in log and metric in log
    assert (tmp_path / 'out' / 'last_checkpoint').exists()

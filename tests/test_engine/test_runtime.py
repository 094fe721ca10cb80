import pytest
from mmengine.config import Config

from mmhire.engine import ConfigError, check_data, convert_sync_bn


def test_convert_sync_bn():
    cfg = Config(dict(model=dict(
        backbone=dict(type='HireMLP', norm_cfg=dict(type='SyncBN', requires_grad=True)),
        heads=[dict(norm_cfg=dict(type='SyncBN')), dict(norm_cfg=dict(type='GN'))])))
    assert convert_sync_bn(cfg) == 2
    assert cfg.model.backbone.norm_cfg.type == 'BN'
    assert cfg.model.heads[0].norm_cfg.type == 'BN' and cfg.model.heads[1].norm_cfg.type == 'GN'


def test_check_data_names_missing_paths(tmp_path):
    (tmp_path / 'coco').mkdir()
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='RepeatDataset', times=2, dataset=dict(
            type='CocoDataset', data_root=str(tmp_path / 'coco'),
            ann_file='annotations/instances_train2017.json',
            data_prefix=dict(img='train2017/'))))))
    with pytest.raises(ConfigError) as info:
        check_data(cfg, ('train_dataloader', ))
    message = str(info.value)
    assert 'instances_train2017.json' in message and 'ann_file' in message
    assert 'COCO' in message and 'make_demo_data.py' in message

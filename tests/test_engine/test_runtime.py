import io

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub

from mmhire.engine import ConfigError, WeightsOnlyCheckpointHook, check_data, convert_sync_bn


def test_checkpoint_hook_makes_weights_only_checkpoints():
    hub = MessageHub.get_instance('mmhire_test_hub')
    for value in (1.5, np.float64(2.5), 3.0):
        hub.update_scalar('train/loss', value)
    hub.update_info('eta', np.float64(12.0))
    checkpoint = dict(meta=dict(seed=np.int64(3), epoch=1), message_hub=hub.state_dict(),
                      state_dict={'w': torch.ones(2)})
    hook = WeightsOnlyCheckpointHook()

    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    buf.seek(0)
    with pytest.raises(Exception, match='weights_only|Unsupported global'):
        torch.load(buf, weights_only=True)  # what mmengine writes on its own

    hook.before_save_checkpoint(None, checkpoint)
    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    hook.after_load_checkpoint(None, loaded)
    restored = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(restored, HistoryBuffer)
    assert restored.data[0].tolist() == [1.5, 2.5, 3.0]
    assert restored.mean() == pytest.approx(7.0 / 3)
    assert loaded['meta']['seed'] == 3 and isinstance(loaded['meta']['seed'], int)
    hub2 = MessageHub.get_instance('mmhire_test_hub2')
    hub2.load_state_dict(loaded['message_hub'])
    assert hub2.get_scalar('train/loss').current() == 3.0


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

import pytest
from mmengine.config import Config

from mmhire.engine import (
    ConfigError,
    check_data,
    convert_sync_bn,
    prepare_train_config,
    use_torchvision_roi_align,
)


def test_convert_sync_bn():
    cfg = Config(dict(model=dict(
        backbone=dict(type='HireMLP', norm_cfg=dict(type='SyncBN', requires_grad=True)),
        heads=[dict(norm_cfg=dict(type='SyncBN')), dict(norm_cfg=dict(type='GN'))])))
    assert convert_sync_bn(cfg) == 2
    assert cfg.model.backbone.norm_cfg.type == 'BN'
    assert cfg.model.heads[0].norm_cfg.type == 'BN' and cfg.model.heads[1].norm_cfg.type == 'GN'


@pytest.mark.floor
def test_roi_align_runs_torchvisions_kernel_on_the_cpu():
    """mmcv's RoIAlign through torchvision's kernel: a config's average-pooling layers switch
    (an explicit choice and max pooling stay), and the two kernels agree bit for bit, values
    and gradients, on RoIs inside, across and outside the map's edges."""
    import torch
    from mmcv.ops import RoIAlign
    cfg = Config(dict(model=dict(roi_head=dict(
        bbox_roi_extractor=dict(roi_layer=dict(type='RoIAlign', output_size=7,
                                               sampling_ratio=0)),
        mask_roi_extractor=dict(roi_layer=dict(type='RoIAlign', output_size=14,
                                               use_torchvision=False)),
        other=dict(roi_layer=dict(type='RoIAlign', output_size=7, pool_mode='max'))))))
    assert use_torchvision_roi_align(cfg) == 1
    head = cfg.model.roi_head
    assert head.bbox_roi_extractor.roi_layer.use_torchvision is True
    assert head.mask_roi_extractor.roi_layer.use_torchvision is False
    assert 'use_torchvision' not in head.other.roi_layer

    generator = torch.Generator().manual_seed(0)
    for dtype, size, sampling in ((torch.float32, 7, 0), (torch.float32, 14, 2),
                                  (torch.float64, 7, 0)):
        feats = torch.randn(2, 8, 20, 24, dtype=dtype, generator=generator)
        corner = torch.rand(40, 2, dtype=dtype, generator=generator) * 110 - 10
        rois = torch.cat([torch.randint(0, 2, (40, 1), generator=generator).to(dtype), corner,
                          corner + torch.rand(40, 2, dtype=dtype, generator=generator) * 60],
                         dim=1)
        results = []
        for use_torchvision in (False, True):
            x = feats.clone().requires_grad_()
            out = RoIAlign(size, 0.25, sampling, aligned=True,
                           use_torchvision=use_torchvision)(x, rois)
            out.backward(torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(out))
            results.append((out.detach(), x.grad))
        assert torch.equal(results[0][0], results[1][0]), (dtype, size)
        assert torch.equal(results[0][1], results[1][1]), (dtype, size)


@pytest.mark.floor
def test_a_cpu_run_uses_torchvisions_roi_align(monkeypatch, tmp_path):
    import torch
    for cuda in (False, True):
        monkeypatch.setattr(torch.cuda, 'is_available', lambda cuda=cuda: cuda)
        cfg = Config(dict(model=dict(roi_head=dict(bbox_roi_extractor=dict(
            roi_layer=dict(type='RoIAlign', output_size=7))))))
        prepare_train_config(cfg, config_path='x.py', work_dir=str(tmp_path))
        layer = cfg.model.roi_head.bbox_roi_extractor.roi_layer
        if cuda:
            assert 'use_torchvision' not in layer
        else:
            assert layer.use_torchvision is True


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


class _FakeRunner:
    """What LoggerHook.after_test_epoch reads from a runner."""

    def __init__(self, log_dir):
        import logging
        self.log_dir = str(log_dir)
        self.test_dataloader = [0, 1]
        self.logger = logging.getLogger('mmhire.test')

        class Processor:
            @staticmethod
            def get_log_after_epoch(runner, length, mode, with_non_scalar=False):
                return {'coco/bbox_mAP': 0.5, 'time': 1.25}, 'log line'
        self.log_processor = Processor()


@pytest.mark.parametrize('main', [True, False])
def test_test_metrics_written_by_the_main_process_only(tmp_path, monkeypatch, main):
    import json

    import mmhire.engine.hooks as hooks
    from mmhire.engine import SafeLoggerHook

    monkeypatch.setattr(hooks, 'is_main_process', lambda: main)
    hook = SafeLoggerHook()
    hook.json_log_path = 'run.json'
    hook.after_test_epoch(_FakeRunner(tmp_path))
    path = tmp_path / 'run.json'
    if main:
        assert [json.loads(line) for line in path.read_text().splitlines()] == [
            {'coco/bbox_mAP': 0.5, 'time': 1.25}]
    else:
        assert not path.exists()


def test_test_and_train_configs_use_the_safe_logger(tmp_path):
    from mmhire.engine.runtime import _use_safe_logger

    cfg = Config(dict(default_hooks=dict(logger=dict(type='LoggerHook', interval=5))))
    _use_safe_logger(cfg)
    assert cfg.default_hooks.logger == dict(type='SafeLoggerHook', interval=5)
    own = Config(dict(default_hooks=dict(logger=dict(type='MyLoggerHook'))))
    _use_safe_logger(own)
    assert own.default_hooks.logger.type == 'MyLoggerHook'  # a user's own hook is left alone


@pytest.mark.floor
def test_compile_option_becomes_the_backbone_hook():
    from mmhire.engine.runtime import _compile_backbone
    cfg = Config(dict(compile=dict(backend='eager'),
                      custom_hooks=[dict(type='CompileBackboneHook'), dict(type='Other')]))
    _compile_backbone(cfg)
    assert cfg.compile is None  # mmengine does not compile the train_step as well
    assert cfg.custom_hooks == [dict(type='Other'),
                                dict(type='CompileBackboneHook', backend='eager')]
    off = Config(dict(compile=False))
    _compile_backbone(off)
    assert 'custom_hooks' not in off


@pytest.mark.floor
@pytest.mark.parametrize('value', ['yes', 1, ['eager']])
def test_bad_compile_option_is_refused(value):
    from mmhire.engine.runtime import _compile_backbone
    with pytest.raises(ConfigError, match=r'give True or a dict of torch.compile options'):
        _compile_backbone(Config(dict(compile=value)))

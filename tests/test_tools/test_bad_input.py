"""Bad input reaching the tools: each case stops with an error that names the file or
parameter, says what is wrong and what to do, and writes nothing it should not."""
import glob
import os

import pytest
import torch
from conftest import CONFIG_DIR, load_tool

from mmhire.datasets.demo_data import make_coco_demo, make_imagenet_demo
from mmhire.models import HireMLP
from mmhire.utils import CheckpointError

train_tool = load_tool('train.py')
test_tool = load_tool('test.py')

DET = os.path.join(CONFIG_DIR, 'demo', 'mask_rcnn_hire_t_coco_demo.py')
CLS = os.path.join(CONFIG_DIR, 'demo', 'hire_t_in1k_demo.py')
NO_WORKERS = [f'{loader}.{key}' for loader in ('train_dataloader', 'val_dataloader',
                                               'test_dataloader')
              for key in ('num_workers=0', 'persistent_workers=False')]
ONE_EPOCH = ['train_cfg.max_epochs=1', 'train_dataloader.batch_size=2']


def break_json(root):
    path = root / 'data/demo/coco/annotations/instances_train2017.json'
    path.write_text(path.read_text()[:-40])  # cut off, as by an interrupted download
    return os.path.relpath(path, root)


def break_image(root):
    # every training image, so that whichever the sampler draws first is broken
    for path in glob.glob(str(root / 'data/demo/imagenet/train/*/*.png')):
        with open(path, 'wb') as f:
            f.write(b'\x89PNG\r\n\x1a\n truncated')
    return "image 'data/demo/imagenet/train/"


def remove_folder(root):
    path = root / 'data/demo/imagenet/val'
    for name in glob.glob(str(path / '*' / '*')):
        os.remove(name)
    for name in glob.glob(str(path / '*')):
        os.rmdir(name)
    os.rmdir(path)
    return 'data/demo/imagenet/val'


@pytest.mark.parametrize('config,damage,code,words', [
    (DET, break_json, 1, ['not valid JSON', 'download or generate it again']),
    (CLS, break_image, 1, ['cannot be decoded', 'replace it']),
    (CLS, remove_folder, 2, ['does not exist', 'make_demo_data.py']),
])
def test_broken_dataset(tmp_path, monkeypatch, capsys, config, damage, code, words):
    make_coco_demo(str(tmp_path / 'data/demo/coco'), num_train=2, num_val=2, size=96)
    make_imagenet_demo(str(tmp_path / 'data/demo/imagenet'), num_train_per_class=1,
                       num_val_per_class=1, size=48)
    where = damage(tmp_path)
    monkeypatch.chdir(tmp_path)
    work_dir = tmp_path / 'work'
    assert train_tool.main([config, '--work-dir', str(work_dir), '--cfg-options', *ONE_EPOCH,
                            *NO_WORKERS]) == code
    err = capsys.readouterr().err
    assert where in err
    for word in words:
        assert word in err
    assert not glob.glob(str(work_dir / '*.pth'))


def test_missing_checkpoint_for_test(tmp_path, capsys):
    assert test_tool.main([CLS, str(tmp_path / 'nope.pth')]) == 2
    assert 'nope.pth' in capsys.readouterr().err


class TestPretrainedInit:
    """``init_cfg=dict(type='Pretrained', ...)`` of the backbone, as detection and
    segmentation configs use it."""

    def save(self, tmp_path, state_dict, name='w.pth'):
        path = str(tmp_path / name)
        torch.save(dict(state_dict=state_dict), path)
        return path

    def test_loads_a_fitting_checkpoint(self, tmp_path):
        source = HireMLP('tiny')
        source.init_weights()
        path = self.save(tmp_path, {f'backbone.{k}': v for k, v in
                                    source.state_dict().items()})
        model = HireMLP('tiny', init_cfg=dict(type='Pretrained', checkpoint=path,
                                              prefix='backbone.'))
        model.init_weights()
        for key, value in source.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), key

    def test_other_arch_names_first_mismatched_keys(self, tmp_path):
        path = self.save(tmp_path, HireMLP('large').state_dict())
        model = HireMLP('tiny', init_cfg=dict(type='Pretrained', checkpoint=path))
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(CheckpointError) as info:
            model.init_weights()
        message = str(info.value)
        assert 'does not fit' in message and path in message
        assert 'downsample_layers.0.conv.weight: checkpoint (96, 3, 7, 7), model (64, 3, 7, 7)'\
            in message
        # nothing was half-loaded: only the initialisation before the load ran
        assert model.state_dict().keys() == before.keys()

    def test_unconverted_or_wrong_prefix(self, tmp_path):
        released = self.save(tmp_path, {'network.0.0.norm1.weight': torch.ones(64)})
        with pytest.raises(CheckpointError, match='python -m mmhire weights <size> --file'):
            HireMLP('tiny', init_cfg=dict(type='Pretrained', checkpoint=released)).init_weights()
        converted = self.save(tmp_path, {f'backbone.{k}': v for k, v in
                                         HireMLP('tiny').state_dict().items()}, 'c.pth')
        with pytest.raises(CheckpointError, match="prefix='encoder.'"):
            HireMLP('tiny', init_cfg=dict(type='Pretrained', checkpoint=converted,
                                          prefix='encoder')).init_weights()

    def test_truncated_checkpoint(self, tmp_path):
        path = self.save(tmp_path, HireMLP('tiny').state_dict())
        with open(path, 'r+b') as f:
            f.truncate(os.path.getsize(path) // 2)
        with pytest.raises(CheckpointError, match='truncated or corrupt'):
            HireMLP('tiny', init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights()


@pytest.mark.floor
class TestPretrainedArgument:
    """mmseg's ``model.pretrained``, which its ``EncoderDecoder`` hands to the backbone, in a
    user's config that swaps the backbone of one of mmseg's model configs."""

    def build(self, pretrained):
        from mmengine.config import Config
        from mmseg.registry import MODELS
        cfg = Config.fromstring(
            "_base_ = 'mmseg::_base_/models/upernet_r50.py'\n"
            "custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)\n"
            "norm_cfg = dict(type='BN', requires_grad=True)\n"
            "model = dict(backbone=dict(_delete_=True, type='HireMLP', arch='tiny',\n"
            "                           out_indices=(0, 1, 2, 3)),\n"
            "             decode_head=dict(in_channels=[64, 128, 320, 512], norm_cfg=norm_cfg),\n"
            "             auxiliary_head=dict(in_channels=320, norm_cfg=norm_cfg))\n", '.py')
        if pretrained != 'inherited':
            cfg.model.pretrained = pretrained
        assert cfg.model.pretrained is not None or pretrained is None
        return MODELS.build(cfg.model)

    def test_resnet_weights_left_over_from_the_base_config(self):
        with pytest.raises(ValueError, match=r"model.pretrained='open-mmlab://resnet50_v1c'.*"
                           r'set model.pretrained=None'):
            self.build('inherited')

    def test_none_builds(self):
        model = self.build(None)
        assert type(model.backbone).__name__ == 'HireMLP'

    def test_a_checkpoint_path_becomes_pretrained_init(self, tmp_path):
        reference = HireMLP('tiny', out_indices=(0, 1, 2, 3))
        path = str(tmp_path / 'hire_t_in1k.pth')
        # a converted classifier, keys under backbone.
        torch.save({'state_dict': {f'backbone.{k}': v
                                   for k, v in reference.state_dict().items()}}, path)
        with pytest.warns(DeprecationWarning, match='pretrained argument is deprecated'):
            model = self.build(path)
        assert model.backbone.init_cfg == dict(type='Pretrained', checkpoint=path)
        model.backbone.init_weights()
        checked = 0
        for key, value in reference.state_dict().items():
            assert torch.equal(model.backbone.state_dict()[key], value), key
            checked += 1
        assert checked == len(reference.state_dict())

    def test_not_a_path(self):
        with pytest.raises(TypeError, match='pretrained must be a checkpoint path'):
            HireMLP('tiny', pretrained=dict(checkpoint='x.pth'))

"""The converter end to end: released layout -> tool -> mmpretrain classifier from the config."""
import argparse
import copy
import os

import pytest
import torch
from conftest import CONFIG_DIR, load_tool
from reference_hire_mlp import ReferenceHireMLPNet, deit_style_checkpoint, randomize_

from mmhire.models import HireMLP
from mmhire.utils.config import build_model, load_config

converter = load_tool('model_converters/hire_mlp_to_mmhire.py')

pytestmark = pytest.mark.floor


def stage_outputs(backbone):
    """Registers hooks that record the un-normed output of every stage."""
    outs = {}
    for k, stage in enumerate(backbone.stages):
        stage.register_forward_hook(lambda m, i, o, k=k: outs.__setitem__(k, o))
    return outs


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('convert')
    reference = randomize_(ReferenceHireMLPNet('tiny'), seed=7).eval()
    ema = randomize_(ReferenceHireMLPNet('tiny'), seed=8).state_dict()
    src = tmp / 'hire_mlp_tiny.pth'
    torch.save(deit_style_checkpoint(reference, ema), src)
    dst = tmp / 'checkpoints' / 'hire_t_in1k.pth'
    assert converter.main([str(src), str(dst)]) == 0
    return reference, src, dst


def test_checkpoint_is_weights_only_and_complete(converted):
    _, _, dst = converted
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    model = build_model(load_config(os.path.join(CONFIG_DIR, 'hire_t_in1k.py')))
    missing, unexpected = model.load_state_dict(ckpt['state_dict'], strict=False)
    assert missing == [] and unexpected == []


def test_logits_and_stages_equal_released_model(converted):
    reference, _, dst = converted
    model = build_model(load_config(os.path.join(CONFIG_DIR, 'hire_t_in1k.py')))
    model.load_state_dict(torch.load(dst, weights_only=True)['state_dict'], strict=True)
    # float64: the unit-scale random weights amplify float32 rounding through the depth,
    # and the check is about the weights landing in the right places
    model.eval().double()
    reference = copy.deepcopy(reference).double()
    outs = stage_outputs(model.backbone)
    checked = 0
    gen = torch.Generator().manual_seed(14)
    for size in [(224, 224), (193, 257), (96, 160)]:
        x = torch.randn(2, 3, *size, dtype=torch.float64, generator=gen)
        with torch.no_grad():
            expected_logits = reference(x)
            expected_stages = reference.forward_stages(x)
            logits = model(x, mode='tensor')
        assert (logits - expected_logits).abs().max() < 1e-6
        for k in range(4):
            assert (outs[k] - expected_stages[k]).abs().max() < 1e-6
            checked += 1
    assert checked == 12


def test_pretrained_init_cfg_loads_backbone(converted):
    reference, _, dst = converted
    backbone = HireMLP(arch='tiny', out_indices=(0, 1, 2, 3), init_cfg=dict(
        type='Pretrained', checkpoint=str(dst), prefix='backbone.'))
    backbone.init_weights()
    own = backbone.state_dict()
    assert torch.equal(own['downsample_layers.0.conv.weight'],
                       reference.state_dict()['patch_embed.proj.weight'])
    assert torch.equal(own['stages.3.1.mlp.fc2.bias'],
                       reference.state_dict()['network.6.1.mlp.fc2.bias'])


def test_use_ema(converted, tmp_path):
    _, src, _ = converted
    dst = tmp_path / 'ema.pth'
    assert converter.main([str(src), str(dst), '--use-ema']) == 0
    ema = torch.load(src, weights_only=False)['model_ema']
    got = torch.load(dst, weights_only=True)['state_dict']
    assert torch.equal(got['head.fc.weight'], ema['head.weight'])


def test_release_file_is_what_the_release_saves(converted):
    """The test file holds every entry of the release's checkpoints, the Namespace too, and
    plain weights-only loading (without the converter's one extra type) refuses it."""
    _, src, _ = converted
    saved = torch.load(src, weights_only=False)
    assert sorted(saved) == ['args', 'epoch', 'lr_scheduler', 'model', 'model_ema',
                             'optimizer', 'scaler']
    assert isinstance(saved['args'], argparse.Namespace)
    assert saved['optimizer']['state']  # AdamW took a step: exp_avg and exp_avg_sq
    with pytest.raises(Exception, match='Namespace'):
        torch.load(src, weights_only=True)


@pytest.mark.parametrize('layout', ['bare', 'module_prefixed'])
def test_bare_and_ddp_state_dicts(converted, tmp_path, layout):
    reference, _, dst = converted
    state = reference.state_dict()
    if layout == 'module_prefixed':
        state = {f'module.{k}': v for k, v in state.items()}
    src = tmp_path / f'{layout}.pth'
    torch.save(state, src)
    out = tmp_path / 'out.pth'
    assert converter.main([str(src), str(out)]) == 0
    got = torch.load(out, weights_only=True)['state_dict']
    expected = torch.load(dst, weights_only=True)['state_dict']
    assert list(got) == list(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_use_ema_without_ema_weights_says_so(converted, tmp_path, capsys):
    reference, _, _ = converted
    src = tmp_path / 'no_ema.pth'
    torch.save(dict(model=reference.state_dict(), model_ema=None, epoch=3), src)
    dst = tmp_path / 'out.pth'
    assert converter.main([str(src), str(dst), '--use-ema']) == 1
    err = capsys.readouterr().err
    assert 'model_ema is empty' in err and 'drop --use-ema' in err
    assert not dst.exists()
    assert converter.main([str(src), str(dst)]) == 0  # the model weights convert


def test_bad_source_reports_and_writes_nothing(tmp_path, capsys):
    src = tmp_path / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(1)}, src)
    dst = tmp_path / 'out.pth'
    assert converter.main([str(src), str(dst)]) == 1
    assert 'released Hire-MLP checkpoint' in capsys.readouterr().err
    assert converter.main([str(tmp_path / 'nope.pth'), str(dst)]) == 1
    assert 'does not exist' in capsys.readouterr().err
    assert not dst.exists()

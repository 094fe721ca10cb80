import pytest
import torch
from reference_hire_mlp import ReferenceHireMLPNet, randomize_

from mmhire.models.utils import convert_hire_mlp, extract_state_dict


@pytest.fixture(scope='module')
def released_tiny():
    return randomize_(ReferenceHireMLPNet('tiny'), seed=5).state_dict()


def test_released_layout_has_415_entries(released_tiny):
    # SPEC: the released tiny checkpoint has 415 entries, 45 of them num_batches_tracked.
    assert len(released_tiny) == 415
    assert sum(k.endswith('num_batches_tracked') for k in released_tiny) == 45


def test_every_key_is_mapped_once(released_tiny):
    converted = convert_hire_mlp(released_tiny)
    assert len(converted) == len(released_tiny)
    assert all(k.startswith(('backbone.', 'head.fc.')) for k in converted)
    assert converted['backbone.downsample_layers.0.conv.weight'] is \
        released_tiny['patch_embed.proj.weight']
    assert converted['backbone.downsample_layers.2.bn.running_var'] is \
        released_tiny['network.3.norm.running_var']
    assert converted['backbone.stages.2.3.token_mixer.width_mlp.norm.weight'] is \
        released_tiny['network.4.3.attn.mlp_w1_norm.weight']
    assert converted['backbone.stages.3.1.token_mixer.reweight.fc2.bias'] is \
        released_tiny['network.6.1.attn.reweight.fc2.bias']
    assert converted['backbone.norm3.running_mean'] is released_tiny['norm.running_mean']
    assert converted['head.fc.weight'] is released_tiny['head.weight']


def test_module_prefix_is_stripped(released_tiny):
    ddp = {'module.' + k: v for k, v in released_tiny.items()}
    assert list(convert_hire_mlp(ddp)) == list(convert_hire_mlp(released_tiny))


@pytest.mark.parametrize('bad_key', ['network.0.0.attn.mlp_x1.weight', 'pos_embed',
                                     'network.1.0.norm1.weight', 'network.2.proj.weight'])
def test_unmapped_key_fails_loudly(released_tiny, bad_key):
    state = dict(released_tiny, **{bad_key: torch.zeros(1)})
    with pytest.raises(KeyError, match=bad_key.replace('.', r'\.')):
        convert_hire_mlp(state)


def test_not_a_hire_checkpoint():
    with pytest.raises(KeyError, match='released Hire-MLP checkpoint'):
        convert_hire_mlp({'conv1.weight': torch.zeros(1)})


def test_extract_state_dict(released_tiny):
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in released_tiny.items()}
    both = dict(model=released_tiny, model_ema=ema, epoch=3)
    assert extract_state_dict(both)['norm.bias'] is released_tiny['norm.bias']
    assert extract_state_dict(both, use_ema=True)['norm.bias'] is ema['norm.bias']
    assert extract_state_dict(dict(model_ema=ema))['norm.bias'] is ema['norm.bias']
    assert extract_state_dict(released_tiny)['norm.bias'] is released_tiny['norm.bias']
    with pytest.raises(KeyError, match='model_ema'):
        extract_state_dict(dict(model=released_tiny), use_ema=True)
    with pytest.raises(TypeError, match='not tensors'):
        extract_state_dict(dict(model=dict(released_tiny, epoch=3)))

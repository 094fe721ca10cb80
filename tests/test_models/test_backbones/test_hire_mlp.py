import copy

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_hire_mlp import ARCHS, ReferenceHireMLPNet, randomize_, randomize_bn_
from torch.nn.modules.batchnorm import _BatchNorm

from mmhire.models import HireMLP
from mmhire.models.backbones.hire_mlp import MIN_INPUT_SIZE, HireBlock
from mmhire.models.layers import fast_path
from mmhire.models.utils import convert_hire_mlp

ARCH_NAMES = ['tiny', 'small', 'base', 'large']
ODD_SIZES = [(112, 137), (511, 511), (193, 257), (33, 97), (32, 32)]


def expected_hw(h, w):
    """Spatial sizes of the four stage outputs for an (h, w) input."""
    h, w = (h - 3) // 4 + 1, (w - 3) // 4 + 1
    sizes = [(h, w)]
    for _ in range(3):
        h, w = -(-h // 2), -(-w // 2)
        sizes.append((h, w))
    return sizes


def custom_arch(**overrides):
    arch = dict(depths=[1, 2, 3, 1], channels=[16, 32, 48, 64], mlp_ratios=[2, 2, 2, 2],
                region_sizes=[4, 3, 3, 2], step_strides=[2, 2, 3, 2], step_dilations=[2, 2, 1, 1])
    arch.update(overrides)
    return arch


def load_reference_into(backbone, reference):
    """Loads a reference network's weights (released layout) through the converter; only the
    output norms, which the released model lacks, stay as they are."""
    converted = convert_hire_mlp(reference.state_dict())
    state = {k[len('backbone.'):]: v for k, v in converted.items()
             if k.startswith('backbone.') and not k.startswith('backbone.norm')}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    assert unexpected == []
    assert all(k.startswith('norm') for k in missing)


def stage_errors(model, reference, x):
    """Largest difference of each stage output of ``model`` from the reference's, relative
    to the reference's largest value."""
    outs = {}
    hooks = [s.register_forward_hook(lambda m, i, o, k=k: outs.__setitem__(k, o))
             for k, s in enumerate(model.stages)]
    try:
        with torch.no_grad():
            expected = reference.forward_stages(x)
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return [float((outs[k] - e).abs().max() / e.abs().max()) for k, e in enumerate(expected)]


class TestHireMLPArch:

    @pytest.mark.parametrize('arch', ARCH_NAMES)
    def test_aliases_and_settings(self, arch):
        model = HireMLP(arch=arch)
        alias = HireMLP(arch=arch[0].upper())
        assert model.arch_settings == alias.arch_settings
        assert model.arch_settings['depths'] == ARCHS[arch]['depths']
        assert model.channels == ARCHS[arch]['channels']
        assert [len(s) for s in model.stages] == ARCHS[arch]['depths']

    @pytest.mark.parametrize('arch,expected', [
        ('tiny', 18_041_672), ('small', 33_113_848), ('base', 58.23), ('large', 95.72)])
    def test_classifier_parameter_count(self, arch, expected):
        model = HireMLP(arch=arch, out_indices=(3, ))
        head = nn.Linear(model.channels[-1], 1000)
        count = sum(p.numel() for p in model.parameters()) + sum(
            p.numel() for p in head.parameters())
        if isinstance(expected, int):
            assert count == expected
        else:  # published with two decimals, in millions
            assert round(count / 1e6, 2) == expected

    def test_custom_arch(self):
        model = HireMLP(arch=custom_arch(), out_indices=(0, 1, 2, 3)).eval()
        outs = model(torch.rand(1, 3, 64, 64))
        assert [o.shape[1] for o in outs] == [16, 32, 48, 64]

    def test_custom_arch_with_fewer_stages(self):
        arch = {k: v[:2] for k, v in custom_arch().items()}
        model = HireMLP(arch=arch, out_indices=(0, -1)).eval()
        outs = model(torch.rand(1, 3, 64, 64))
        assert [tuple(o.shape) for o in outs] == [(1, 16, 16, 16), (1, 32, 8, 8)]

    @pytest.mark.parametrize('arch,error,words', [
        ('huge', ValueError, ["'huge'", "'tiny'", 'depths']),
        (3, TypeError, ['str or a dict']),
        ({k: v for k, v in custom_arch().items() if k != 'region_sizes'}, ValueError,
         ['missing', 'region_sizes']),
        (dict(custom_arch(), extra=[1]), ValueError, ['unknown', 'extra']),
        (custom_arch(depths=[1, 1, 1]), ValueError, ['lengths', 'depths']),
        (custom_arch(channels=[16, 0, 48, 64]), ValueError, ['channels']),
        (custom_arch(mlp_ratios=[2, 2, -1, 2]), ValueError, ['mlp_ratios']),
        (custom_arch(step_dilations=[2, -2, 1, 1]), ValueError, ['step_dilations']),
    ])
    def test_bad_arch(self, arch, error, words):
        with pytest.raises(error) as info:
            HireMLP(arch=arch)
        for word in words:
            assert word in str(info.value)


class TestHireMLPOutputs:

    @pytest.mark.parametrize('arch', ARCH_NAMES)
    @pytest.mark.parametrize('size', [(224, 224)] + ODD_SIZES[:2])
    def test_shapes_every_arch(self, arch, size):
        model = HireMLP(arch=arch, out_indices=(0, 1, 2, 3)).eval()
        with torch.no_grad():
            outs = model(torch.rand(1, 3, *size))
        expected = [(1, c, *hw) for c, hw in zip(model.channels, expected_hw(*size))]
        assert [tuple(o.shape) for o in outs] == expected

    @pytest.mark.parametrize('size', ODD_SIZES)
    def test_odd_sizes_train_mode(self, size):
        model = HireMLP(arch='tiny', out_indices=(0, 1, 2, 3)).train()
        outs = model(torch.rand(2, 3, *size))
        assert [tuple(o.shape[2:]) for o in outs] == expected_hw(*size)
        assert all(torch.isfinite(o).all() for o in outs)

    def test_advertised_channels_and_strides(self):
        model = HireMLP(arch='small', out_indices=(0, 1, 2, 3)).eval()
        outs = model(torch.rand(1, 3, 256, 256))
        assert [o.shape[1] for o in outs] == model.out_channels == [64, 128, 320, 512]
        assert [256 // o.shape[2] for o in outs] == model.out_strides == [4, 8, 16, 32]

    @pytest.mark.parametrize('out_indices,expected', [
        ((3, ), [3]), (3, [3]), ((0, 1, 2, 3), [0, 1, 2, 3]), ((-1, ), [3]),
        ((-4, 2), [0, 2]), ((2, 0), [0, 2])])
    def test_out_indices(self, out_indices, expected):
        model = HireMLP(arch='tiny', out_indices=out_indices).eval()
        assert model.out_indices == expected
        norms = sorted(n for n, _ in model.named_children() if n.startswith('norm'))
        assert norms == [f'norm{i}' for i in expected]
        outs = model(torch.rand(1, 3, 64, 64))
        assert [o.shape[1] for o in outs] == [model.channels[i] for i in expected]

    @pytest.mark.parametrize('out_indices', [(4, ), (-5, ), (0, 0), (), (1.0, ), '3'])
    def test_bad_out_indices(self, out_indices):
        with pytest.raises((ValueError, TypeError)) as info:
            HireMLP(arch='tiny', out_indices=out_indices)
        assert 'out_indices' in str(info.value)

    @pytest.mark.parametrize('shape,dtype,words', [
        ((3, 64, 64), torch.float32, ['4-D', '(3, 64, 64)']),
        ((1, 1, 3, 64, 64), torch.float32, ['4-D']),
        ((1, 4, 64, 64), torch.float32, ['in_channels=3', '4 channels']),
        ((1, 3, 64, 64), torch.uint8, ['floating-point', 'torch.uint8']),
        ((1, 3, 31, 64), torch.float32, [str(MIN_INPUT_SIZE), '(31, 64)']),
    ])
    def test_bad_input(self, shape, dtype, words):
        model = HireMLP(arch='tiny').eval()
        with pytest.raises((ValueError, TypeError)) as info:
            model(torch.zeros(shape, dtype=dtype))
        for word in words:
            assert word in str(info.value)


class TestHireMLPTraining:

    def test_frozen_stages_range(self):
        for bad in (-2, 5, 1.5):
            with pytest.raises(ValueError, match='frozen_stages'):
                HireMLP(arch='tiny', frozen_stages=bad)

    @pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 2, 4])
    def test_frozen_stages(self, frozen_stages):
        model = HireMLP(arch='tiny', frozen_stages=frozen_stages, out_indices=(0, 1, 2, 3))
        model.train()
        frozen = [] if frozen_stages < 0 else [model.downsample_layers[0]]
        for i in range(max(frozen_stages, 0)):
            frozen += [model.downsample_layers[i], model.stages[i]] if i else [model.stages[0]]
        frozen_ids = {id(p) for m in frozen for p in m.parameters()}
        checked = 0
        for module in frozen:
            for sub in module.modules():
                assert not sub.training
            for param in module.parameters():
                assert not param.requires_grad
                checked += 1
        for param in model.parameters():
            if id(param) not in frozen_ids:
                assert param.requires_grad
                checked += 1
        assert checked == len(list(model.parameters()))
        if frozen_stages < 4:
            assert model.stages[max(frozen_stages, 0)].training

    def test_norm_eval(self):
        model = HireMLP(arch='tiny', norm_eval=True).train()
        bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
        assert len(bns) > 0 and all(not m.training for m in bns)
        assert model.stages[0][0].mlp.training
        model = HireMLP(arch='tiny', norm_eval=False).train()
        assert all(m.training for m in model.modules() if isinstance(m, _BatchNorm))

    def test_drop_path_schedule(self):
        model = HireMLP(arch='small', drop_path_rate=0.3)
        blocks = [b for stage in model.stages for b in stage]
        rates = [getattr(b.drop_path, 'drop_prob', 0.) for b in blocks]
        n = len(blocks)
        assert n == 20
        assert rates == pytest.approx([0.3 * k / (n - 1) for k in range(n)])
        assert isinstance(blocks[0].drop_path, nn.Identity)
        with pytest.raises(ValueError, match='drop_path_rate'):
            HireMLP(arch='tiny', drop_path_rate=1.0)

    def test_shift_steps(self):
        model = HireMLP(arch='base')
        steps = [[b.step for b in stage] for stage in model.stages]
        assert steps[0] == [0, 2, 0, 2]
        assert steps[1] == [0, 2, 0, 2, 0, 2]
        assert steps[2] == [0, 1, 2] * 8
        assert steps[3] == [0, 1, 0]

    def test_init_weights_changes_weights(self):
        torch.manual_seed(0)
        model = HireMLP(arch='tiny')
        before = copy.deepcopy(model.state_dict())
        model.init_weights()
        after = model.state_dict()
        changed = [k for k in before if k.endswith('weight') and before[k].dim() > 1
                   and not torch.equal(before[k], after[k])]
        convs = [k for k in before if k.endswith('weight') and before[k].dim() > 1]
        assert changed == convs and len(convs) > 0
        for key in convs:
            if after[key].numel() >= 1000:
                assert after[key].std().item() == pytest.approx(0.02, rel=0.1)
        biases = [k for k in after if k.endswith('bias')]
        assert all(torch.count_nonzero(after[k]) == 0 for k in biases)
        bn_weights = [m.weight for m in model.modules() if isinstance(m, _BatchNorm)]
        assert all(torch.all(w == 1) for w in bn_weights)

    def test_gradients_reach_every_parameter(self):
        model = HireMLP(arch='tiny', out_indices=(0, 1, 2, 3)).train()
        outs = model(torch.rand(2, 3, 97, 65))
        sum(o.mean() for o in outs).backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert missing == []
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())

    def test_with_cp_matches_plain(self):
        torch.manual_seed(0)
        plain = HireMLP(arch='tiny', out_indices=(0, 1, 2, 3), drop_path_rate=0.)
        ckpt = HireMLP(arch='tiny', out_indices=(0, 1, 2, 3), with_cp=True)
        ckpt.load_state_dict(plain.state_dict())
        assert all(b.with_cp for s in ckpt.stages for b in s)
        x = torch.rand(2, 3, 96, 80)
        outs = []
        for model in (plain, ckpt):
            model.train()
            inp = x.clone().requires_grad_()
            out = model(inp)
            sum(o.sum() for o in out).backward()
            outs.append((out, inp.grad, [p.grad for p in model.parameters()]))
        for a, b in zip(outs[0][0], outs[1][0]):
            torch.testing.assert_close(a, b)
        torch.testing.assert_close(outs[0][1], outs[1][1])
        for a, b in zip(outs[0][2], outs[1][2]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

    def test_norm_cfg_and_act_cfg(self):
        model = HireMLP(arch='tiny', norm_cfg=dict(type='GN', num_groups=4),
                        act_cfg=dict(type='SiLU'), conv_act_cfg=dict(type='LeakyReLU'))
        assert not any(isinstance(m, _BatchNorm) for m in model.modules())
        assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
        assert isinstance(model.stages[0][0].mlp.act, nn.SiLU)
        assert isinstance(model.stages[0][0].token_mixer.height_mlp.act, nn.LeakyReLU)
        outs = model.train()(torch.rand(1, 3, 64, 64))
        assert torch.isfinite(outs[0]).all()


@pytest.mark.floor
class TestAgainstReference:
    """The backbone against the plain SPEC re-implementation in reference_hire_mlp.py, with
    the fast forms everywhere they apply and with the plain formulation alone."""

    @pytest.fixture(autouse=True, params=['on', 'off'])
    def fast_forms(self, request):
        with fast_path(request.param):
            yield request.param

    SIZES = [(224, 224), (193, 257), (33, 97), (64, 64), (130, 98)]

    @pytest.mark.parametrize('arch', ['tiny', 'small'])
    def test_stage_outputs_equal_reference(self, arch):
        """Same formulas: in float64 with unit-scale random weights (which amplify any
        difference through the depth) the stage outputs agree to 1e-6 of their largest value."""
        reference = randomize_(ReferenceHireMLPNet(arch), seed=1).eval().double()
        model = HireMLP(arch=arch, out_indices=(0, 1, 2, 3)).eval().double()
        load_reference_into(model, reference)
        gen = torch.Generator().manual_seed(11)
        patterns = set()
        for size in self.SIZES:
            x = torch.randn(2, 3, *size, dtype=torch.float64, generator=gen)
            for k, error in enumerate(stage_errors(model, reference, x)):
                # stage 0 agrees to ~1e-15; the chaotic unit-scale weights grow rounding
                # differences to ~1e-9 by stage 3, while a wrong rearrangement gives ~1
                assert error < 1e-6, (size, k, error)
                patterns.update((k, s) for s in reference.steps[k])
        # Every (stage, shift) pair of the architecture was exercised at every size.
        assert patterns == {(0, 0), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2), (3, 0),
                            (3, 1)}

    @pytest.mark.parametrize('arch', ['tiny', 'small'])
    def test_float32_within_1e5_of_reference(self, arch):
        """In float32, with weights at the scale training gives (trunc-normal 0.02, BN
        statistics near 0/1), every stage output is within 1e-5 of the reference, relative
        to its largest value; the fast gathers only change the order of float sums."""
        reference = ReferenceHireMLPNet(arch)
        gen = torch.Generator().manual_seed(4)
        with torch.no_grad():
            for module in reference.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    module.weight.normal_(0, 0.02, generator=gen).clamp_(-0.04, 0.04)
                    if module.bias is not None:
                        module.bias.uniform_(-0.02, 0.02, generator=gen)
        randomize_bn_(reference, gen).eval()
        model = HireMLP(arch=arch, out_indices=(0, 1, 2, 3)).eval()
        load_reference_into(model, reference)
        for size in [(224, 224), (193, 257)]:
            x = torch.randn(2, 3, *size, generator=gen)
            for k, error in enumerate(stage_errors(model, reference, x)):
                assert error < 1e-5, (size, k, error)

    def test_train_mode_equals_reference(self):
        reference = randomize_(ReferenceHireMLPNet('tiny'), seed=2).train().double()
        model = HireMLP(arch='tiny', out_indices=(3, )).train().double()
        load_reference_into(model, reference)
        x = torch.randn(3, 3, 72, 88, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(12))
        expected = reference.forward_stages(x)[-1]
        with torch.no_grad():
            model.norm3.weight.fill_(1.)
            model.norm3.bias.zero_()
        got = model(x)[0]
        # norm3 in train mode standardises with batch statistics; do the same to the reference.
        mean = expected.mean(dim=(0, 2, 3), keepdim=True)
        var = expected.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        torch.testing.assert_close(got, (expected - mean) / torch.sqrt(var + 1e-5),
                                   rtol=1e-7, atol=1e-7)

    def test_train_mode_gradients_equal_reference(self):
        """Training (channels-last stages, the pooled means' own backward) gives the
        formulation's gradients, for the input and every parameter."""
        reference = randomize_(ReferenceHireMLPNet('tiny'), seed=3).train().double()
        model = HireMLP(arch='tiny', out_indices=(3, ), drop_path_rate=0.).train().double()
        load_reference_into(model, reference)
        x = torch.randn(2, 3, 72, 88, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(13), requires_grad=True)
        weight = torch.randn(2, 512, 3, 3, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(14))
        (reference.forward_stages(x)[-1] * weight).sum().backward()
        expected_x, x.grad = x.grad, None
        model.norm3.eval()  # an affine map that training leaves alone: the stage output
        with torch.no_grad():
            model.norm3.running_mean.zero_()
            model.norm3.running_var.fill_(1. - model.norm3.eps)
        (model(x)[0] * weight).sum().backward()
        torch.testing.assert_close(x.grad, expected_x, rtol=1e-9, atol=1e-12)
        # the reference's gradients in mmhire's layout, through the converter
        grads = {name: param.grad for name, param in reference.named_parameters()}
        state = {k: grads.get(k, v) for k, v in reference.state_dict().items()}
        converted = convert_hire_mlp(state)
        checked = 0
        for name, param in model.named_parameters():
            if name.startswith('norm3'):
                continue
            torch.testing.assert_close(param.grad, converted['backbone.' + name], rtol=1e-8,
                                       atol=1e-12, msg=name)
            checked += 1
        # every parameter the stages use: the reference's final norm and head are not
        assert checked == sum(grad is not None for grad in grads.values()) > 200

    def test_wrap_pad_larger_than_feature_map(self):
        """Regions larger than the map: the pad wraps around more than once."""
        settings = dict(region_sizes=[7, 5, 5, 4], step_strides=[2, 2, 3, 2],
                        step_dilations=[3, 2, 1, 1])
        reference = randomize_(ReferenceHireMLPNet('tiny', **settings), seed=3).eval().double()
        arch = dict(ARCHS['tiny'], mlp_ratios=[4] * 4, **settings)
        model = HireMLP(arch=arch, out_indices=(0, 1, 2, 3)).eval().double()
        load_reference_into(model, reference)
        # stage 2 is 2x3 with regions of 5, stage 3 is 1x2
        x = torch.randn(1, 3, 32, 45, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(13))
        with torch.no_grad():
            expected = reference.forward_stages(x)
            outs = model(x)
        assert [tuple(o.shape[2:]) for o in outs] == expected_hw(32, 45)
        # Outputs are normed; compare through the same eval-mode norms.
        for k in range(4):
            norm = getattr(model, f'norm{k}')
            with torch.no_grad():
                torch.testing.assert_close(outs[k], norm(expected[k]), rtol=1e-7, atol=1e-7)


def test_block_is_pre_norm_residual():
    block = HireBlock(16, region_size=2, step=1).eval()
    for module in (block.token_mixer, block.mlp):
        for param in module.parameters():
            nn.init.zeros_(param)
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(height=st.integers(MIN_INPUT_SIZE, 512), width=st.integers(MIN_INPUT_SIZE, 512))
def test_any_input_size_follows_the_stride_formula(height, width):
    """Every input from the minimum size to 512 on each side runs, and the four outputs
    have the stem's (x - 3) // 4 + 1 followed by ceil(x / 2) per stage. The arch keeps
    the released region sizes, steps and dilations with fewer channels, which is what the
    region rearrangement depends on."""
    model = _PROPERTY_MODEL
    with torch.no_grad():
        outs = model(torch.rand(1, 3, height, width))
    assert [tuple(o.shape[2:]) for o in outs] == expected_hw(height, width)
    assert [o.shape[1] for o in outs] == model.channels
    assert all(torch.isfinite(o).all() for o in outs)


_PROPERTY_MODEL = HireMLP(
    arch=dict(HireMLP.arch_zoo['tiny'], depths=[2, 2, 2, 2], channels=[8, 16, 24, 32]),
    out_indices=(0, 1, 2, 3)).eval()


@pytest.mark.parametrize('dim,p,shape', [(2, 4, (2, 3, 8, 5)), (3, 3, (2, 3, 4, 9)),
                                         (2, 2, (1, 5, 6, 6))])
def test_reference_rearrangement_matches_definition(dim, p, shape):
    from reference_hire_mlp import regions_to_channels_by_definition

    from mmhire.models.hire_mlp_reference import channels_to_regions, regions_to_channels
    x = torch.randn(shape)
    folded = regions_to_channels(x, dim, p)
    assert torch.equal(folded, regions_to_channels_by_definition(x, dim, p))
    assert torch.equal(channels_to_regions(folded, dim, p), x)


def _trained_like(model, seed=0):
    """Weights at training scale and BN statistics away from the 0/1 defaults, so that
    folding the norms changes the convolutions' weights."""
    model.init_weights()
    return randomize_bn_(model, torch.Generator().manual_seed(seed)).eval()


class TestDeploy:

    @pytest.mark.parametrize('dtype,tolerance', [(torch.float64, 1e-10), (torch.float32, 1e-5)])
    def test_folding_the_norms_keeps_the_outputs(self, dtype, tolerance):
        model = _trained_like(HireMLP('tiny', out_indices=(0, 1, 2, 3))).to(dtype)
        deployed = copy.deepcopy(model).switch_to_deploy()
        norms = [m for m in deployed.modules() if isinstance(m, _BatchNorm)]
        assert len(norms) == 4  # only the output norms are left
        for size in [(224, 224), (97, 131)]:
            x = torch.randn(2, 3, *size, dtype=dtype)
            with torch.no_grad():
                for got, expected in zip(deployed(x), model(x)):
                    assert (got - expected).abs().max() / expected.abs().max() < tolerance

    def test_deployed_model_refuses_training(self):
        deployed = _trained_like(HireMLP('tiny')).switch_to_deploy()
        assert deployed.switch_to_deploy() is deployed  # a second call changes nothing
        with pytest.raises(RuntimeError, match='deploy form'):
            deployed.train()

    def test_only_batch_norm_can_be_folded(self):
        model = HireMLP(arch='tiny', norm_cfg=dict(type='GN', num_groups=4)).eval()
        with pytest.raises(TypeError, match='BatchNorm'):
            model.switch_to_deploy()


def test_bf16_autocast_stays_close_to_float32():
    """What --amp gives on the CPU: bfloat16 matmuls under autocast. The pooled features of
    a deploy-form HireMLP-small with training-scale weights keep a cosine similarity of at
    least 0.999 with float32, and their relative error stays within 1e-2."""
    model = _trained_like(HireMLP('small'), seed=5).switch_to_deploy()
    x = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        expected = model(x)[-1].mean(dim=(2, 3))
        with torch.autocast('cpu', dtype=torch.bfloat16):
            got = model(x)[-1].float().mean(dim=(2, 3))
    cosine = torch.nn.functional.cosine_similarity(got, expected, dim=1)
    assert cosine.min() >= 0.999, cosine
    assert ((got - expected).norm(dim=1) / expected.norm(dim=1)).max() <= 1e-2


def test_empty_batch_gives_empty_outputs():
    model = HireMLP('tiny', out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.zeros(0, 3, 64, 64))
    assert [tuple(out.shape) for out in outs] == [
        (0, c, h, w) for c, (h, w) in zip(model.channels, expected_hw(64, 64))]

"""The fast forms of mmhire.models.layers against their plain forms, layer by layer and on the
whole model, and the plan that chooses between them once per forward; every module runs on
every path."""
import copy
import io
import os

import pytest
import torch
import torch.nn as nn
from module_calls import count_calls
from reference_hire_mlp import randomize_bn_ as randomize_bn

from mmhire.models import HireMLP
from mmhire.models.backbones.hire_mlp import HireBlock, RegionMLP
from mmhire.models.layers import (
    FORMS,
    PLAIN,
    Plan,
    PointwiseConv2d,
    RegionGathers,
    current_plan,
    fast_path,
    fold_regions,
    make_plan,
    plan,
    unfold_regions,
    use_plan,
)
from mmhire.utils.compat import torchscript_export_kwargs


def randomize_bn_(model, seed=0):
    return randomize_bn(model, torch.Generator().manual_seed(seed))


#: Every fast form: what a module on its own runs when told to
FAST = Plan(region_gather=True, pointwise_bmm=True, batch_chunks=True)


def run(module, x, mode):
    """Inference with ``fast_path=mode``: a HireMLP makes its plan from it; a module used on
    its own is told the plan (every fast form for 'on', the plain form for 'off')."""
    if isinstance(module, HireMLP):
        with fast_path(mode), torch.no_grad():
            return module(x)
    with use_plan(FAST if mode == 'on' else PLAIN), torch.no_grad():
        return module(x)


class TestSwitch:

    def test_unknown_values_name_the_valid_ones(self, monkeypatch):
        with pytest.raises(ValueError, match="fast_path='fast': choose one of 'auto', 'on', "
                           "'off'"):
            HireMLP('tiny', fast_path='fast')
        with pytest.raises(ValueError, match="choose one of 'auto', 'on', 'off'"):
            with fast_path('yes'):
                pass
        monkeypatch.setenv('MMHIRE_FAST_PATH', '1')
        with pytest.raises(ValueError, match="MMHIRE_FAST_PATH='1': choose one of"):
            make_plan(torch.zeros(1))

    def test_precedence(self, monkeypatch):
        monkeypatch.setenv('MMHIRE_FAST_PATH', 'off')
        assert plan.resolve('auto') == 'off'      # the environment decides 'auto'
        assert plan.resolve('on') == 'on'         # the model's own setting beats it
        with fast_path('auto'):
            assert plan.resolve('on') == 'auto'   # the context manager beats both
        monkeypatch.delenv('MMHIRE_FAST_PATH')
        assert plan.resolve('auto') == 'auto'

    @pytest.mark.parametrize('vendor', ['intel', 'amd', 'other'])
    def test_auto_follows_the_measured_table(self, monkeypatch, vendor):
        monkeypatch.setattr(plan, 'cpu_vendor', lambda: vendor)
        x = torch.zeros(1, 2, 3, 4)
        checked = 0
        with torch.no_grad():
            auto, on, off = (make_plan(x, mode) for mode in ('auto', 'on', 'off'))
            for form, vendors in FORMS.items():
                assert getattr(auto, form) == (vendor in vendors)
                assert getattr(on, form) and not getattr(off, form)
                checked += 1
        assert checked == len(FORMS) == 3
        assert off is PLAIN

    def test_fast_forms_serve_cpu_inference_only(self):
        x = torch.zeros(1, 2, 3, 4)
        with torch.no_grad():
            assert make_plan(x, 'on').region_gather
            assert make_plan(x.half(), 'on') is PLAIN
            with torch.autocast('cpu', dtype=torch.bfloat16):
                assert make_plan(x, 'on') is PLAIN
        assert make_plan(x, 'on') is PLAIN  # autograd on: training


class CountingEnviron(dict):
    """``os.environ`` that counts the reads of one variable."""

    def __init__(self, environ, name):
        super().__init__(environ)
        self.name, self.reads = name, 0

    def get(self, key, default=None):
        self.reads += key == self.name
        return super().get(key, default)

    def __getitem__(self, key):
        self.reads += key == self.name
        return super().__getitem__(key)


class TestPlan:

    def test_one_decision_per_forward(self, monkeypatch):
        """The environment variable is read at most once per forward, and every module of a
        stage reads the one plan that the forward made."""
        model = small_model().eval()
        environ = CountingEnviron(os.environ, 'MMHIRE_FAST_PATH')
        monkeypatch.setattr(os, 'environ', environ)
        plans = []
        for module in model.stages.modules():
            module.register_forward_pre_hook(lambda m, args: plans.append(current_plan()))
        for mode, reads in (('auto', 1), ('on', 0), ('off', 0)):
            plans.clear()
            environ.reads = 0
            model.fast_path = mode
            with torch.no_grad():
                model(torch.randn(2, 3, 64, 64))
            assert environ.reads == reads, mode
            assert len(plans) > 50 and len(set(map(id, plans))) == 1, mode
        assert plans[0] is PLAIN  # 'off' set after construction reaches every module
        environ.reads = 0
        with fast_path('on'), torch.no_grad():  # the context manager decides: no read
            model(torch.randn(2, 3, 64, 64))
        assert environ.reads == 0

    def test_a_module_on_its_own_runs_the_plain_form_unless_told(self):
        mlp = RegionMLP(6, 3, 1, 'h').eval()
        seen = []
        mlp.fc1.register_forward_pre_hook(lambda m, args: seen.append(current_plan()))
        with fast_path('on'), torch.no_grad():
            mlp(torch.randn(1, 6, 5, 5))
            with use_plan(FAST):
                mlp(torch.randn(1, 6, 5, 5))
        assert seen == [PLAIN, FAST] and current_plan() is PLAIN


@pytest.mark.parametrize('shape', [(2, 5, 7, 3, 4), (3, 40, 30, 1, 2)])
def test_pointwise_fast_form_equals_conv2d(shape):
    B, C, out_channels, H, W = shape
    conv = PointwiseConv2d(C, out_channels).double()
    x = torch.randn(B, C, H, W, dtype=torch.float64)
    expected = nn.functional.conv2d(x, conv.weight, conv.bias)
    torch.testing.assert_close(run(conv, x, 'on'), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(run(conv, x, 'off'), expected, rtol=1e-12, atol=1e-12)


# (H, W, region size, step): regions that tile the map or not, shifts, a wrap-pad longer
# than the map
SHAPES = [(8, 12, 4, 0), (7, 10, 3, 1), (5, 9, 2, 1), (9, 9, 3, 2), (3, 5, 4, 3), (1, 2, 3, 1)]


@pytest.mark.parametrize('dim', [2, 3])
@pytest.mark.parametrize('height,width,region_size,step', SHAPES)
def test_region_fold_forms_agree(dim, height, width, region_size, step):
    """Both forms fold the same values into the same channels, and unfolding undoes the
    fold; the gathers' width map is the plain one transposed."""
    x = torch.randn(2, 3, height, width, dtype=torch.float64)
    plain = fold_regions(x, dim, region_size, step)
    gathers = RegionGathers(region_size, step)
    fast = gathers.fold(x, dim)
    torch.testing.assert_close(fast if dim == 2 else fast.transpose(2, 3), plain,
                               rtol=0, atol=0)
    length = x.size(dim)
    assert torch.equal(unfold_regions(plain, dim, region_size, step, length), x)
    assert torch.equal(gathers.unfold(fast, dim, length), x)
    # position i of the shifted map holds x[i - step]: region 0, position 0 is x[-step]
    first = x.select(dim, (-step) % length)
    assert torch.equal(plain[:, 0::region_size].select(dim, 0), first)


@pytest.mark.parametrize('axis', ['h', 'w'])
@pytest.mark.parametrize('height,width,region_size,step', SHAPES[:5])
def test_region_mlp_forms_agree(axis, height, width, region_size, step):
    torch.manual_seed(0)
    mlp = randomize_bn_(RegionMLP(6, region_size, step, axis).double()).eval()
    x = torch.randn(2, 6, height, width, dtype=torch.float64)
    torch.testing.assert_close(run(mlp, x, 'on'), run(mlp, x, 'off'), rtol=1e-12, atol=1e-12)


def test_block_and_deployed_block_forms_agree():
    torch.manual_seed(0)
    block = randomize_bn_(HireBlock(8, region_size=3, step=1).double()).eval()
    x = torch.randn(2, 8, 7, 11, dtype=torch.float64)
    expected = run(block, x, 'off')
    torch.testing.assert_close(run(block, x, 'on'), expected, rtol=1e-12, atol=1e-12)
    deployed = copy.deepcopy(block)
    deployed.switch_to_deploy()
    for mode in ('on', 'off'):
        torch.testing.assert_close(run(deployed, x, mode), expected, rtol=1e-10, atol=1e-10)


def test_whole_model_forms_agree_outputs_and_gradients():
    model = randomize_bn_(HireMLP('tiny', out_indices=(0, 1, 2, 3)).double(), seed=3)
    x = torch.randn(3, 3, 97, 75, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(4))
    model.eval()
    expected = run(model, x, 'off')
    for got, want in zip(run(model, x, 'on'), expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # training: the same gradients for the input and every parameter either way
    model.train()
    grads = {}
    for mode in ('on', 'off'):
        inp = x.clone().requires_grad_()
        with fast_path(mode):
            loss = sum(out.square().mean() for out in copy.deepcopy(model)(inp))
        grads[mode] = torch.autograd.grad(loss, [inp])[0]
    torch.testing.assert_close(grads['on'], grads['off'], rtol=1e-10, atol=1e-10)


def test_chunked_inference_equals_the_whole_batch(monkeypatch):
    """With batch chunks, a stage runs a few images at a time in CPU inference: the outputs
    equal the whole batch's; training mode takes the whole batch."""
    model = randomize_bn_(HireMLP('tiny', out_indices=(0, 1, 2, 3)), seed=8).eval()
    x = torch.randn(5, 3, 96, 80, generator=torch.Generator().manual_seed(9))
    whole = run(model, x, 'on')  # 30720 elements per image: far below one chunk
    # per image, stage 0 holds 64 x 24 x 20 = 30720 elements: chunks of 2, 2 and 1 images
    monkeypatch.setattr(HireMLP, 'INFER_CHUNK_ELEMENTS', 2 * 30720)
    sizes = []
    model.stages[0].register_forward_pre_hook(lambda m, args: sizes.append(len(args[0])))
    chunked = run(model, x, 'on')
    assert sizes == [2, 2, 1]
    for got, expected in zip(chunked, whole):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    sizes.clear()
    model.train()
    run(model, x, 'on')  # train mode without autograd: BatchNorm uses the batch statistics
    assert sizes == [5]


def small_model():
    arch = dict(HireMLP.arch_zoo['tiny'], depths=[1, 1, 1, 1], channels=[8, 16, 24, 32])
    return randomize_bn_(HireMLP(arch, out_indices=(0, 1, 2, 3), drop_path_rate=0.1))


def _train(model):
    sum(out.mean() for out in model.train()(torch.randn(2, 3, 64, 64))).backward()


def _infer(mode):
    return lambda model: run(model.eval(), torch.randn(2, 3, 64, 64), mode)


def _deployed(mode):
    def path(model):
        with fast_path(mode), torch.no_grad():
            model(torch.randn(2, 3, 64, 64))
    return path


def _autocast(model):
    with torch.autocast('cpu', dtype=torch.bfloat16), torch.no_grad():
        model.eval()(torch.randn(2, 3, 64, 64))


def _onnx_export(model):
    """An ONNX export (TorchScript exporter), whose stages run channels-last."""
    torch.onnx.export(model.eval(), (torch.randn(2, 3, 64, 64), ), io.BytesIO(),
                      opset_version=17, **torchscript_export_kwargs())


PATHS = {'train': _train, 'infer_auto': _infer('auto'), 'infer_on': _infer('on'),
         'infer_off': _infer('off'), 'bf16_autocast': _autocast, 'onnx_export': _onnx_export}


@pytest.mark.parametrize('path', sorted(PATHS))
def test_every_module_runs_on_every_path(path):
    model = small_model()
    missed, ran = count_calls(model, PATHS[path])
    assert missed == [] and ran > 100


@pytest.mark.parametrize('mode', ['on', 'off', 'onnx_export'])
def test_every_module_runs_in_deploy_form(mode):
    model = small_model().eval().switch_to_deploy()
    missed, ran = count_calls(model, _onnx_export if mode == 'onnx_export' else _deployed(mode))
    assert missed == [] and ran > 50


class Perturbed(nn.Module):
    """Wraps a layer and changes its output y to y + tanh(y): a stand-in for LoRA, quantized
    or pruned replacements. Not a constant shift, which a train-mode BatchNorm after the last
    block would cancel (up to rounding)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        y = self.layer(x)
        return y + torch.tanh(y)


# one module of each kind the fast forms touch or sit next to
SWAPS = ['stages.0.0.token_mixer.height_mlp.fc1', 'stages.0.0.token_mixer.width_mlp.fc2',
         'stages.1.0.token_mixer.channel_fc', 'stages.1.0.token_mixer.proj',
         'stages.2.0.token_mixer.reweight.fc1', 'stages.2.0.mlp.fc1', 'stages.3.0.mlp.fc2',
         'stages.0.0.token_mixer.height_mlp.norm', 'downsample_layers.1.conv']


@pytest.mark.parametrize('path', ['train', 'infer_on', 'infer_off', 'deploy'])
def test_a_replaced_module_changes_the_output_on_every_path(path):
    base = small_model().eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    changed = 0
    for name in SWAPS:
        model, reference = copy.deepcopy(base), copy.deepcopy(base)
        if path == 'deploy':
            if name.endswith('.norm'):
                continue  # folded away in deploy form
            model.switch_to_deploy()
            reference.switch_to_deploy()
        parent, _, leaf = name.rpartition('.')
        owner = model.get_submodule(parent)
        setattr(owner, leaf, Perturbed(getattr(owner, leaf)))
        mode = {'infer_on': 'on', 'infer_off': 'off'}.get(path, 'auto')
        if path == 'train':
            torch.manual_seed(0)
            got = model.train()(x)[-1]
            torch.manual_seed(0)
            expected = reference.train()(x)[-1]
        else:
            got, expected = run(model, x, mode)[-1], run(reference, x, mode)[-1]
        assert not torch.allclose(got, expected), name
        changed += 1
    assert changed == len(SWAPS) - (path == 'deploy')


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')


@pytest.mark.cuda
@cuda
def test_cuda_paths_equal_cpu():
    """On a GPU: inference (eager and deploy form), a float32 training step and an autocast
    step give the CPU's numbers, and every module runs."""
    model = small_model().eval()
    x = torch.randn(2, 3, 64, 64)
    expected = run(model, x, 'off')
    gpu = copy.deepcopy(model).cuda()
    for got, want in zip(run(gpu, x.cuda(), 'auto'), expected):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-4)
    deployed = copy.deepcopy(gpu).switch_to_deploy()
    for got, want in zip(run(deployed, x.cuda(), 'auto'), expected):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-4)
    missed, _ = count_calls(gpu, lambda m: _train_on(m, 'cuda'))
    assert missed == []
    with torch.autocast('cuda', dtype=torch.float16):
        loss = sum(out.float().mean() for out in gpu.train()(x.cuda()))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in gpu.parameters())


def _train_on(model, device):
    sum(out.mean() for out in model.train()(torch.randn(2, 3, 64, 64, device=device))).backward()

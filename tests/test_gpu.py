"""What a GPU user relies on, checked on a CUDA device against the CPU.

HireMLP-tiny and -small on the device against the CPU's plain formulation (float64 at odd
sizes, forward and gradients; float32 with TF32 off), bf16 and fp16 autocast, a GradScaler
fp16 training step, ``with_cp``'s memory, ``torch.compile(dynamic=True)`` over six sizes, and
forward hooks on every module on every path.

Without a GPU these skip, unless ``MMHIRE_GPU_CHECK_DRY_RUN=1``: then every check runs on the
CPU at small sizes, with the CPU as the "device" (``tools/gpu_check.sh --dry-run`` sets it, so
that the checks themselves are tried before a GPU runs them). What only a GPU can show (the
device's numbers, its memory) is then compared CPU to CPU or left out, as each test says.
"""
import copy
import os

import pytest
import torch
from module_calls import count_calls
from reference_hire_mlp import randomize_bn_
from torch._dynamo.testing import CompileCounter

from mmhire.models import HireMLP
from mmhire.models.layers.plan import fast_path
from mmhire.utils.compat import INDUCTOR_OPTIONS

pytestmark = pytest.mark.cuda

CUDA = torch.cuda.is_available()
DRY_RUN = os.environ.get('MMHIRE_GPU_CHECK_DRY_RUN') == '1'
# (batch, height, width): odd sizes, neither multiples of the regions nor of 32
SIZE = (2, 97, 131) if CUDA else (1, 45, 67)
ARCHS = ('tiny', 'small')
# bf16 keeps 8 bits of mantissa, fp16 11: the pooled features' relative error against float32
AUTOCAST_TOLERANCE = {torch.bfloat16: 3e-2, torch.float16: 5e-3}


@pytest.fixture(scope='module')
def device():
    if CUDA:
        return torch.device('cuda')
    if DRY_RUN:
        return torch.device('cpu')
    pytest.skip('needs a CUDA device; MMHIRE_GPU_CHECK_DRY_RUN=1 runs these checks on the CPU '
                '(tools/gpu_check.sh --dry-run does)')


@pytest.fixture(autouse=True)
def no_tf32():
    """float32 is float32 here: TF32 matmuls and convolutions off, as they were."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def trained_like(arch, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = HireMLP(arch, **dict(dict(out_indices=(0, 1, 2, 3)), **kwargs))
    model.init_weights()
    return randomize_bn_(model, torch.Generator().manual_seed(seed))


def inputs(seed=1, dtype=torch.float32):
    return torch.randn(*SIZE[:1], 3, *SIZE[1:], dtype=dtype,
                       generator=torch.Generator().manual_seed(seed))


def relative_error(got, expected):
    return float((got.double().cpu() - expected.double().cpu()).abs().max()
                 / expected.double().abs().max().clamp_min(1e-30))


def check_gradients(grads, expected, tolerance):
    """Every gradient within ``tolerance`` of the model's largest (a relative error per
    parameter would divide by gradients that are zero in exact arithmetic: the biases before
    a BatchNorm)."""
    assert grads.keys() == expected.keys() and len(grads) > 40
    scale = max(float(g.abs().max()) for g in expected.values())
    for name, got in grads.items():
        error = float((got.double().cpu() - expected[name].double().cpu()).abs().max())
        assert error <= tolerance * scale, (name, error / scale)


def forward_backward(model, x, mode):
    """Outputs (detached) and every parameter's gradient of a training-mode step under
    ``fast_path=mode``."""
    model.zero_grad(set_to_none=True)
    with fast_path(mode):
        outs = model.train()(x)
    sum((out * out).mean() for out in outs).backward()
    return ([o.detach() for o in outs],
            {name: p.grad.detach() for name, p in model.named_parameters()})


@pytest.mark.parametrize('arch', ARCHS)
def test_float64_equals_the_cpu_plain_formulation(arch, device):
    """The device with its default forms ('auto') against the CPU's plain formulation, in
    float64: outputs within 1e-9 of their scale, gradients within 1e-9 of the largest."""
    model = trained_like(arch).double()
    x = inputs(dtype=torch.float64)
    expected_outs, expected_grads = forward_backward(model, x, 'off')
    outs, grads = forward_backward(copy.deepcopy(model).to(device), x.to(device), 'auto')
    for got, expected in zip(outs, expected_outs):
        assert got.shape == expected.shape
        assert relative_error(got, expected) <= 1e-9
    check_gradients(grads, expected_grads, 1e-9)


@pytest.mark.parametrize('arch', ARCHS)
def test_float32_without_tf32_within_1e4(arch, device):
    """float32 on the device (TF32 off) against float64 on the CPU: outputs and deploy-form
    inference within 1e-4 of their scale, gradients within 1e-4 of the largest."""
    model = trained_like(arch)
    reference = copy.deepcopy(model).double()
    x = inputs()
    expected_outs, expected_grads = forward_backward(reference, x.double(), 'off')
    gpu = model.to(device)
    outs, grads = forward_backward(gpu, x.to(device), 'auto')
    for got, expected in zip(outs, expected_outs):
        assert relative_error(got, expected) <= 1e-4
    check_gradients(grads, expected_grads, 1e-4)
    with torch.no_grad():
        expected = reference.eval()(x.double())
        deployed = copy.deepcopy(gpu).eval().switch_to_deploy()
        for got, want in zip(deployed(x.to(device)), expected):
            assert relative_error(got, want) <= 1e-4


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16], ids=['bf16', 'fp16'])
def test_autocast_forward_and_backward(dtype, device):
    """Under autocast every output and gradient is finite, and the pooled last features stay
    within AUTOCAST_TOLERANCE of float32 (relative, per image)."""
    model = trained_like('small').to(device)
    x = inputs().to(device)
    with torch.no_grad():
        expected = model.eval()(x)[-1].mean(dim=(2, 3))
        with torch.autocast(device.type, dtype=dtype):
            got = model(x)[-1].float().mean(dim=(2, 3))
    error = ((got - expected).norm(dim=1) / expected.norm(dim=1)).max()
    assert error <= AUTOCAST_TOLERANCE[dtype], float(error)
    with torch.autocast(device.type, dtype=dtype):
        outs = model.train()(x)
    sum(out.float().mean() for out in outs).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_grad_scaler_fp16_training_step(device):
    """One step as mmengine's AmpOptimWrapper takes it on a GPU: fp16 autocast, a scaled
    loss, the optimizer stepping through the scaler; the weights move and stay finite."""
    model = trained_like('tiny', out_indices=(3, )).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type)
    before = [p.detach().clone() for p in model.parameters()]
    with torch.autocast(device.type, dtype=torch.float16):
        loss = model.train()(inputs().to(device))[-1].float().pow(2).mean()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    assert torch.isfinite(loss) and scaler.get_scale() > 0
    moved = sum(not torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert moved == len(before)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_with_cp_same_gradients_less_memory(device):
    """Gradient checkpointing changes nothing but memory: the same gradients, and on a GPU
    at least 30% less peak memory for a training step at a detection size."""
    model = trained_like('small')
    checkpointed = trained_like('small', with_cp=True)
    x = inputs()
    peaks = []
    for m in (model, checkpointed):
        m.to(device)
        if device.type == 'cuda':
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        forward_backward(m, x.to(device), 'auto')
        if device.type == 'cuda':
            big = torch.randn(2, 3, 800, 1216, device=device)
            torch.cuda.reset_peak_memory_stats(device)
            sum(out.mean() for out in m.train()(big)).backward()
            peaks.append(torch.cuda.max_memory_allocated(device))
            m.zero_grad(set_to_none=True)
    _, grads = forward_backward(model, x.to(device), 'auto')
    _, cp_grads = forward_backward(checkpointed, x.to(device), 'auto')
    check_gradients(cp_grads, grads, 1e-5)
    if device.type == 'cuda':
        assert peaks[1] <= 0.7 * peaks[0], peaks


def test_compile_dynamic_six_sizes_at_most_two_graphs(device):
    """torch.compile(dynamic=True) of the deploy form, by inductor on a GPU (the eager
    backend in a dry run: the graphs are dynamo's either way): at most two compilations over
    six sizes, and every output equal to eager."""
    model = trained_like('tiny').to(device).eval().switch_to_deploy()
    counter = CompileCounter()
    if device.type == 'cuda':
        from torch._inductor.compile_fx import compile_fx

        def backend(gm, example_inputs):
            counter.frame_count += 1
            return compile_fx(gm, example_inputs, config_patches=INDUCTOR_OPTIONS)
    else:
        backend = counter
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, dynamic=True)
    sizes = [(97, 131), (224, 224), (67, 300), (193, 257), (480, 640), (800, 1216)]
    if device.type != 'cuda':  # smaller, every side still >= 67 (see test_shape_generic)
        sizes = [(67, 75), (72, 72), (67, 130), (80, 96), (120, 160), (200, 304)]
    with torch.no_grad():
        for height, width in sizes:
            x = torch.randn(2, 3, height, width, device=device)
            for got, expected in zip(compiled(x), model(x)):
                assert got.shape == expected.shape
                assert relative_error(got, expected) <= 1e-4
    assert 1 <= counter.frame_count <= 2, counter.frame_count


def _hooked_paths(device):
    x = inputs().to(device)

    def train(model):
        sum(out.mean() for out in model.train()(x)).backward()

    def infer(mode):
        def path(model):
            with fast_path(mode), torch.no_grad():
                model.eval()(x)
        return path

    def autocast(model):
        dtype = torch.bfloat16 if device.type == 'cpu' else torch.float16
        with torch.autocast(device.type, dtype=dtype):
            sum(out.float().mean() for out in model.train()(x)).backward()

    return dict(train=train, infer_auto=infer('auto'), infer_off=infer('off'),
                autocast=autocast)


@pytest.mark.parametrize('path', ['train', 'infer_auto', 'infer_off', 'autocast', 'deploy'])
def test_hooks_see_every_module(path, device):
    """A forward hook on every module fires on every path, on the device."""
    model = trained_like('tiny', drop_path_rate=0.1).to(device)
    if path == 'deploy':
        model.eval().switch_to_deploy()
        run = _hooked_paths(device)['infer_auto']
    else:
        run = _hooked_paths(device)[path]
    missed, ran = count_calls(model, run)
    assert missed == [] and ran > 50

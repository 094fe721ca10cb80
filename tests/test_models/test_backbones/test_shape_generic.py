"""One graph for every input size: HireMLP under torch.compile with dynamic shapes.

A backbone of a detector or segmentor sees images of many sizes. Its forward decides nothing
in Python from the input size, so dynamo captures one graph for all of them; a counting
backend counts the compilations. Dynamo itself treats a size of 1 apart (it specialises
sizes 0 and 1): below 67 pixels a side, a map of the last stages, or its number of regions,
is 1, and such an input compiles once more. Hence "at most twice" over sizes from 32x32 up.
The first compiled size is not square here: dynamo's duck sizing would tie height to width.
"""
import pytest
import torch
from torch._dynamo.testing import CompileCounter

from mmhire.models import HireMLP
from mmhire.utils.compat import INDUCTOR_OPTIONS, compile_kwargs

# Detection-like sizes: tiny, odd, not multiples of 32, square, elongated, large.
SIZES = [(97, 131), (32, 32), (67, 300), (193, 257), (224, 224), (225, 223), (511, 511),
         (480, 640), (736, 1344), (800, 1216), (1344, 1344)]
# The released arch's region sizes and shifts (every stage has shifted and unshifted
# blocks), narrower and shallower to keep the test quick.
SHALLOW = dict(HireMLP.arch_zoo['tiny'], depths=[2, 2, 3, 2], channels=[16, 32, 48, 64])


def build(arch, deploy=False):
    torch.manual_seed(0)
    model = HireMLP(arch, out_indices=(0, 1, 2, 3))
    model.init_weights()
    if deploy:
        model.eval().switch_to_deploy()
    return model


def run_sizes(compiled, sizes, batch, train):
    """Runs ``compiled`` at every size (forward and, if ``train``, backward) and returns how
    many sizes ran."""
    ran = 0
    for height, width in sizes:
        x = torch.randn(batch, 3, height, width)
        if train:
            sum(out.mean() for out in compiled(x)).backward()
        else:
            with torch.no_grad():
                compiled(x)
        ran += 1
    return ran


# torch 2.1's inductor fails on the index arithmetic of dynamic shapes (sympy raises
# "non-commutative expressions are not supported" in its FloorDiv simplification, whatever the
# sympy version); its dynamo, with the graph-capturing backends, works.
INDUCTOR_DYNAMIC = tuple(int(v) for v in torch.__version__.split('.')[:2]) >= (2, 2)


@pytest.mark.floor
class TestCompileOnce:
    """On both stacks."""

    def setup_method(self):
        torch._dynamo.reset()

    def test_no_graph_break(self):
        model = build('tiny', deploy=True)
        explained = torch._dynamo.explain(model)(torch.randn(1, 3, 193, 257))
        assert explained.graph_break_count == 0 and explained.graph_count == 1

    @pytest.mark.parametrize('deploy', [True, False])
    def test_inference_compiles_at_most_twice(self, deploy):
        model = build(SHALLOW, deploy).eval()
        counter = CompileCounter()
        compiled = torch.compile(model, backend=counter, dynamic=True)
        assert run_sizes(compiled, SIZES, batch=2, train=False) == len(SIZES) >= 10
        assert 1 <= counter.frame_count <= 2, counter.frame_count

    def test_training_compiles_at_most_twice(self):
        model = build(SHALLOW).train()
        counter = CompileCounter()
        compiled = torch.compile(model, backend=counter, dynamic=True)
        assert run_sizes(compiled, SIZES, batch=2, train=True) == len(SIZES)
        assert 1 <= counter.frame_count <= 2, counter.frame_count
        assert all(p.grad is not None for p in model.parameters())

    @pytest.mark.skipif(not INDUCTOR_DYNAMIC, reason="torch 2.1's inductor cannot compile "
                        'dynamic shapes of this model (a sympy error in its FloorDiv); dynamo '
                        'and the compile counts are tested on torch 2.1 too')
    def test_inductor_equals_eager(self):
        """The real compiler (inductor), in the deploy form that serves inference: one
        compilation for two sizes, each output equal to eager."""
        model = build(SHALLOW, deploy=True)
        compiled = torch.compile(model, dynamic=True)
        checked = 0
        with torch.no_grad():
            for height, width in [(97, 131), (224, 224)]:
                x = torch.randn(2, 3, height, width)
                for got, expected in zip(compiled(x), model(x)):
                    assert got.shape == expected.shape
                    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
                    checked += 1
        assert checked == 8

    @pytest.mark.skipif(not INDUCTOR_DYNAMIC, reason="torch 2.1's inductor cannot compile "
                        'dynamic shapes of this model (a sympy error in its FloorDiv)')
    def test_inductor_training_step(self):
        """Training under inductor with dynamic shapes, as CompileBackboneHook and the
        benchmark compile it (compile_kwargs: without its layout setting inductor fails on
        the fold's view that the backward keeps). One block per stage keeps it quick; the
        gradients equal eager's."""
        arch = dict(SHALLOW, depths=[1, 1, 1, 1])
        model = build(arch).train()
        eager = build(arch).train()
        compiled = torch.compile(model, **compile_kwargs())
        x = torch.randn(2, 3, 97, 131)
        sum(out.mean() for out in compiled(x)).backward()
        sum(out.mean() for out in eager(x)).backward()
        checked = 0
        for (name, got), expected in zip(model.named_parameters(), eager.parameters()):
            torch.testing.assert_close(got.grad, expected.grad, rtol=1e-3, atol=1e-5,
                                       msg=name)
            checked += 1
        assert checked == len(list(eager.parameters())) > 40

    def test_too_small_input_still_refused(self):
        """The size check is the backbone's own, before its first stage: one block per
        stage keeps the compilation short."""
        model = build(dict(SHALLOW, depths=[1, 1, 1, 1]), deploy=True)
        compiled = torch.compile(model, backend=CompileCounter(), dynamic=True)
        with torch.no_grad():
            compiled(torch.randn(1, 3, 97, 131))
            with pytest.raises(ValueError, match='at least 32x32'):
                compiled(torch.randn(1, 3, 31, 131))


def test_compile_kwargs(monkeypatch):
    import torch._inductor.config as inductor_config
    assert compile_kwargs() == dict(dynamic=True, options=INDUCTOR_OPTIONS)
    assert compile_kwargs(dynamic=False, options={'max_autotune': True}) == dict(
        dynamic=False, options=dict(INDUCTOR_OPTIONS, max_autotune=True))
    assert compile_kwargs(backend='eager') == dict(dynamic=True, backend='eager')
    # torch.compile takes mode or options, not both: with a mode, inductor's config is set
    monkeypatch.setattr(inductor_config, 'layout_optimization', True)
    assert compile_kwargs(mode='max-autotune') == dict(dynamic=True, mode='max-autotune')
    assert inductor_config.layout_optimization is False

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


class TestCompileOnce:
    """On the newest stack. torch 2.1's dynamo adds guards of its own on these sizes (a
    comparison of height with width, products of stage sizes): it compiled the deploy form
    3 times over the 11 sizes. Only the graph-break check runs on the floor stack."""

    def setup_method(self):
        torch._dynamo.reset()

    @pytest.mark.floor
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

    def test_too_small_input_still_refused(self):
        model = build(SHALLOW, deploy=True)
        compiled = torch.compile(model, backend=CompileCounter(), dynamic=True)
        with torch.no_grad():
            compiled(torch.randn(1, 3, 97, 131))
            with pytest.raises(ValueError, match='at least 32x32'):
                compiled(torch.randn(1, 3, 31, 131))

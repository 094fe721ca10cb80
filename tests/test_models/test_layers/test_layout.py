"""The channels-last export form (mmhire.models.layers.layout) against the NCHW forms: layer
by layer, stage by stage, and in exported ONNX graphs."""
import copy
import io

import numpy as np
import pytest
import torch
import torch.nn as nn
from reference_hire_mlp import randomize_bn_ as randomize_bn

from mmhire.deployment.export import dynamo_exporter_available, export_onnx, onnx_session
from mmhire.models import HireMLP
from mmhire.models.layers import (
    PLAIN,
    Plan,
    PointwiseConv2d,
    current_plan,
    exports_channels_last,
    fold_regions,
    fold_regions_last,
    make_plan,
    runs_channels_last,
    unfold_regions_last,
    use_plan,
)
from mmhire.utils.compat import torchscript_export_kwargs

onnx = pytest.importorskip('onnx', reason='the export tests need onnx (requirements/tests.txt)')
pytest.importorskip('onnxruntime',
                    reason='the export tests need onnxruntime (requirements/tests.txt)')

pytestmark = pytest.mark.floor


def position_major(x: torch.Tensor, positions: int) -> torch.Tensor:
    """(B, C*p, H, W) with channel c*p + k -> (B, p*C, H, W) with channel k*C + c."""
    B, Cp, H, W = x.shape
    return x.reshape(B, Cp // positions, positions, H, W).transpose(1, 2).reshape(B, Cp, H, W)


#: The plan of a channels-last stage
LAST = Plan(channels_last=True)


def to_last(x):
    return x.permute(0, 2, 3, 1)


def to_first(x):
    return x.permute(0, 3, 1, 2)


# height, width, region size, step: sizes that are and are not multiples of the region, and
# steps longer than the map
SHAPES = [(8, 12, 4, 0), (7, 10, 3, 1), (5, 9, 2, 1), (3, 5, 4, 3), (1, 2, 3, 1)]


@pytest.mark.parametrize('dim', [2, 3])
@pytest.mark.parametrize('height,width,region_size,step', SHAPES)
def test_region_fold_is_the_plain_fold_position_major(dim, height, width, region_size, step):
    x = torch.randn(2, 3, height, width, dtype=torch.float64)
    plain = fold_regions(x, dim, region_size, step)
    folded = fold_regions_last(to_last(x), dim - 1, region_size, step)
    assert torch.equal(folded, to_last(position_major(plain, region_size)))
    length = x.size(dim)
    assert torch.equal(to_first(unfold_regions_last(folded, dim - 1, region_size, step,
                                                    length)), x)


@pytest.mark.parametrize('in_fold,out_fold', [(1, 1), (3, 1), (1, 3), (2, 2)])
@pytest.mark.parametrize('bias', [True, False])
def test_pointwise_channels_last_equals_conv(in_fold, out_fold, bias):
    torch.manual_seed(0)
    conv = PointwiseConv2d(6, 12, bias=bias, in_fold=in_fold, out_fold=out_fold).double()
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    expected = conv(x)
    with use_plan(LAST):
        assert current_plan().channels_last
        got = conv(to_last(position_major(x, in_fold)))
    assert current_plan() is PLAIN
    torch.testing.assert_close(to_first(got), position_major(expected, out_fold), rtol=1e-12,
                               atol=1e-12)
    with pytest.raises(ValueError, match='in_fold=4 and out_fold=1 must divide'):
        PointwiseConv2d(6, 12, in_fold=4)


def tiny(seed=0):
    model = HireMLP('tiny', out_indices=(0, 1, 2, 3))
    return randomize_bn(model.double(), torch.Generator().manual_seed(seed)).eval()


@pytest.mark.parametrize('deploy', [False, True], ids=['trained_form', 'deploy_form'])
def test_every_stage_gives_the_nchw_numbers_channels_last(deploy):
    """Each stage, norms (through per_channel) and all, on a size that no region divides."""
    model = tiny()
    if deploy:
        model.switch_to_deploy()
    x = torch.randn(2, 3, 97, 75, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for down, stage in zip(model.downsample_layers, model.stages):
            x = down(x)
            expected = stage(x)
            with use_plan(LAST):
                got = to_first(stage(to_last(x)))
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
            x = expected


def test_only_onnx_export_runs_channels_last():
    """The export layout is its own setting: ``fast_path='off'`` (the eager forms) leaves it
    as it is, and ``export_layout='nchw'`` exports the plain layout."""
    assert not exports_channels_last('channels_last') and not exports_channels_last('nchw')
    seen = []

    class Probe(nn.Module):

        def forward(self, x):
            seen.append((exports_channels_last('channels_last'), exports_channels_last('nchw'),
                         make_plan(x, 'off', exports_channels_last('channels_last'))))
            return x + 1

    torch.onnx.export(Probe(), (torch.zeros(1), ), io.BytesIO(), **torchscript_export_kwargs())
    assert seen == [(True, False, LAST)]
    with pytest.raises(ValueError, match="export_layout='NHWC': choose one of 'channels_last', "
                       "'nchw'"):
        HireMLP('tiny', export_layout='NHWC')


class AddOne(nn.Module):
    """A module of a kind the channels-last form does not know (a stand-in for a user's)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x) + 1


class DeclaredAddOne(AddOne):
    """The same, declaring that it takes either layout and its child does too."""

    channels_last_children = ()


def test_channels_last_follows_what_modules_declare():
    """A stage runs channels-last when each module declares it (or is elementwise); the
    children a module declares NCHW may be anything; a name alone earns nothing."""
    stage = tiny().stages[0]
    assert runs_channels_last(stage)
    swapped = copy.deepcopy(stage)
    swapped[0].norm1 = AddOne(swapped[0].norm1)  # declared NCHW by HireBlock: any module
    assert runs_channels_last(swapped)
    swapped[0].mlp.act = DeclaredAddOne(swapped[0].mlp.act)
    assert runs_channels_last(swapped)
    swapped[0].mlp.norm = AddOne(nn.Identity())  # named like a norm, declared by no one
    assert not runs_channels_last(swapped)


def export(model, x, path, exporter='torchscript'):
    """Exports with mmhire's route; returns the file's Conv nodes and a session."""
    export_onnx(model, x, str(path), exporter=exporter)
    graph = onnx.load(str(path)).graph
    return sum(node.op_type == 'Conv' for node in graph.node), onnx_session(str(path))


def check_sizes(model, session, sizes=((64, 96), (97, 75), (33, 130))):
    for height, width in sizes:
        x = torch.randn(2, 3, height, width)
        with torch.no_grad():
            expected = model(x)
        got = session.run(None, {'input': x.numpy()})
        for out, want in zip(got, expected):
            np.testing.assert_allclose(out, want.numpy(), rtol=1e-4,
                                       atol=1e-4 * float(want.abs().max()))


def conv_counts(model):
    """The model's 1x1 convolutions of the stages, and its other convolutions: the
    downsampling ones and two per reweighting MLP."""
    pointwise = sum(isinstance(m, PointwiseConv2d) for m in model.modules())
    others = sum(isinstance(m, nn.Conv2d) for m in model.modules()) - pointwise
    assert others == 4 + 2 * sum(model.arch_settings['depths'])
    return pointwise, others


def test_exported_stages_run_channels_last_unless_switched_off(tmp_path):
    """In the default export the 1x1 convolutions of the stages are matrix products on
    (B, H, W, C) maps: the only Conv nodes are the downsampling convolutions and the
    reweighting MLPs' (on pooled (B, C, 1, 1) maps). ``export_layout='nchw'`` and a stage with
    a module of another kind export NCHW. Each file serves every size."""
    model = tiny().float().switch_to_deploy()
    pointwise, others = conv_counts(model)
    x = torch.randn(1, 3, 64, 96)
    convs, session = export(model, x, tmp_path / 'default.onnx')
    assert convs == others
    check_sizes(model, session)

    plain = copy.deepcopy(model)
    plain.export_layout = 'nchw'
    convs, session = export(plain, x, tmp_path / 'off.onnx')
    assert convs == others + pointwise
    check_sizes(plain, session)

    swapped = copy.deepcopy(model)
    swapped.stages[1][0].mlp.act = AddOne(swapped.stages[1][0].mlp.act)
    assert [runs_channels_last(stage) for stage in swapped.stages] == [True, False, True, True]
    in_stage = sum(isinstance(m, PointwiseConv2d) for m in swapped.stages[1].modules())
    convs, session = export(swapped, x, tmp_path / 'swapped.onnx')
    assert convs == others + in_stage
    check_sizes(swapped, session)
    with torch.no_grad():
        assert not torch.allclose(swapped(x)[-1], model(x)[-1])


@pytest.mark.skipif(not dynamo_exporter_available()[0],
                    reason=f'the dynamo exporter is not available here: '
                    f'{dynamo_exporter_available()[1]}')
def test_dynamo_export_runs_the_stages_channels_last(tmp_path):
    model = tiny().float().switch_to_deploy()
    _, others = conv_counts(model)
    convs, session = export(model, torch.randn(2, 3, 64, 96), tmp_path / 'dynamo.onnx',
                            exporter='dynamo')
    assert convs == others
    check_sizes(model, session)

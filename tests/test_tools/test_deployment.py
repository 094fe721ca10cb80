"""ONNX export of HireMLP once, with dynamic batch, height and width, checked in onnxruntime
against PyTorch at sizes other than the export size."""
import os

import onnx
import pytest
import torch
from conftest import load_tool

from mmhire.deployment.export import (
    check_sizes,
    dynamo_exporter_available,
    export_onnx,
    onnx_session,
)
from mmhire.models import HireMLP

export_tool = load_tool('deployment/export_onnx.py')

# Run sizes: the smallest, odd, square, elongated, large; above and below every export size.
RUN_SIZES = [(32, 32), (33, 47), (67, 300), (193, 257), (224, 224), (225, 223), (320, 96),
             (511, 511), (800, 1216)]


def deployed(arch='tiny', seed=0):
    torch.manual_seed(seed)
    model = HireMLP(arch, out_indices=(0, 1, 2, 3))
    model.init_weights()
    for module in model.modules():  # trained-looking statistics, so folding them matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.)
    return model.eval().switch_to_deploy()


def assert_matches_everywhere(model, path, sizes=RUN_SIZES, batch=2):
    results = check_sizes(model, path, sizes, batch=batch)
    assert [size for size, _ in results] == list(sizes)
    worst = max(error for _, error in results)
    assert worst < 1e-4, results


@pytest.mark.floor
@pytest.mark.parametrize('export_size', [(224, 224), (33, 47), (511, 193), (800, 1216)])
def test_one_file_serves_every_size(tmp_path, export_size):
    """Exported once at a small, odd, elongated or large size, the file gives PyTorch's four
    outputs within 1e-4 at every run size, at another batch size than the export's."""
    model = deployed()
    path = str(tmp_path / 'hire_t.onnx')
    export_onnx(model, torch.randn(1, 3, *export_size), path)
    graph = onnx.load(path).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ['batch', 3, 'height', 'width']
    assert [o.name for o in graph.output] == ['out0', 'out1', 'out2', 'out3']
    assert_matches_everywhere(model, path)


@pytest.mark.floor
def test_custom_arch_with_shifts_longer_than_the_maps(tmp_path):
    """Shifts of 3 and 5 on maps of 1 to 4 positions: the roll is taken modulo the traced
    length (torch's own export of torch.roll slices by the constant shift)."""
    arch = dict(depths=[2, 2, 2, 2], channels=[8, 16, 24, 32], mlp_ratios=[2, 2, 2, 2],
                region_sizes=[4, 3, 3, 5], step_strides=[2, 2, 2, 2],
                step_dilations=[3, 3, 5, 5])
    torch.manual_seed(0)
    model = HireMLP(arch, out_indices=(0, 1, 2, 3))
    model.init_weights()
    model.eval().switch_to_deploy()
    path = str(tmp_path / 'custom.onnx')
    export_onnx(model, torch.randn(1, 3, 224, 224), path)
    assert_matches_everywhere(model, path, [(32, 32), (40, 70), (97, 131), (224, 224)])


@pytest.mark.floor
def test_tool_exports_once_and_checks_several_sizes(tmp_path, capsys):
    out = tmp_path / 'hire_t.onnx'
    assert export_tool.main(['--arch', 'tiny', '--shape', '193', '257', '--out', str(out),
                             '--check-sizes', '224x224', '33x47', '97x311']) == 0
    printed = capsys.readouterr().out
    for size in ('224x224', '33x47', '97x311'):
        line = next(line for line in printed.splitlines() if f'at {size}:' in line)
        assert float(line.split('difference ')[1]) < 1e-4
    assert 'dynamic batch, height and width' in printed
    assert onnx.load(str(out)).opset_import[0].version == 17


@pytest.mark.floor
def test_tool_exports_the_whole_classifier(tmp_path, capsys):
    out = tmp_path / 'hire_t_cls.onnx'
    assert export_tool.main(['--arch', 't', '--classifier', '--out', str(out),
                             '--check-sizes', '224x224', '160x288', '33x47']) == 0
    assert 'worst:' in capsys.readouterr().out
    session = onnx_session(str(out))
    (scores, ) = session.run(None, {'input': torch.randn(3, 3, 97, 131).numpy()})
    assert scores.shape == (3, 1000)


@pytest.mark.skipif(not dynamo_exporter_available()[0],
                    reason=f'the dynamo exporter is not available here: '
                    f'{dynamo_exporter_available()[1]}')
def test_dynamo_exporter_serves_every_size(tmp_path, capsys):
    out = tmp_path / 'hire_t_dynamo.onnx'
    assert export_tool.main(['--arch', 'tiny', '--exporter', 'dynamo',
                             '--out', str(out), '--check-sizes',
                             *(f'{h}x{w}' for h, w in RUN_SIZES)]) == 0
    assert 'worst:' in capsys.readouterr().out


def test_bad_input_is_refused_and_nothing_is_written(tmp_path, capsys):
    for argv, message in [
        (['--shape', '16', '64'], 'below 32x32'),
        (['--check-sizes', '224x224', '31x200'], '31x200'),
        (['--check-sizes', '224by224'], 'is not a size'),
    ]:
        with pytest.raises(SystemExit):
            export_tool.main([*argv, '--out', str(tmp_path / 'x.onnx')])
        assert message in capsys.readouterr().err
    assert export_tool.main(['--arch', 'huge', '--out', str(tmp_path / 'x.onnx')]) == 1
    assert "unknown arch 'huge'" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


@pytest.mark.floor
def test_below_the_minimum_an_onnx_graph_does_not_raise(tmp_path):
    """An ONNX graph cannot raise: at 16x16 it computes what HireMLP computes without its
    size check (the regions wrap around maps smaller than a region), where PyTorch refuses
    the input. Servers check the size before running the file (docs/deployment.md)."""
    model = deployed()
    path = str(tmp_path / 'hire_t.onnx')
    export_onnx(model, torch.randn(1, 3, 224, 224), path)
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ValueError, match='at least 32x32'):
        model(x)
    got = onnx_session(path).run(None, {'input': x.numpy()})
    model._check_input = lambda x: None
    with torch.no_grad():
        expected = model(x)
    assert [g.shape for g in got] == [tuple(e.shape) for e in expected]
    for g, e in zip(got, expected):
        torch.testing.assert_close(torch.from_numpy(g), e, rtol=1e-4, atol=1e-4)


SEGMENTOR_SIZES = ['32x32', '33x47', '96x224', '200x300', '64x64']


@pytest.mark.parametrize('exporter', [
    pytest.param('torchscript', marks=pytest.mark.floor),
    pytest.param('dynamo', marks=pytest.mark.skipif(
        not dynamo_exporter_available()[0],
        reason=f'the dynamo exporter is not available here: '
        f'{dynamo_exporter_available()[1]}')),
])
@pytest.mark.parametrize('config', ['upernet_hire_t_ade20k', 'sem_fpn_hire_t_ade20k'])
def test_whole_segmentor_serves_every_size(tmp_path, capsys, config, exporter):
    """UperNet and Semantic FPN as one class-map file, exported at 128x160: at five other
    sizes at most 1e-4 of the pixels (the tool's tolerance; a near-tie of two classes on
    these random weights) get another class than PyTorch's. mmseg's Upsample and pyramid
    pooling run mmhire's shape-generic forwards during the export; on the newest torch this
    is the route where mmdeploy cannot run."""
    out = tmp_path / 'seg.onnx'
    assert export_tool.main(['--segmentor', config, '--exporter', exporter, '--shape', '128',
                             '160', '--out', str(out), '--tolerance', '1e-4',
                             '--check-sizes', *SEGMENTOR_SIZES]) == 0
    printed = capsys.readouterr().out
    assert printed.count('share of pixels with another class') == len(SEGMENTOR_SIZES)
    graph = onnx.load(str(out)).graph
    assert [o.name for o in graph.output] == ['classes']


def test_segmentor_option_takes_an_mmseg_config(tmp_path, capsys):
    assert export_tool.main(['--segmentor', 'hire_t_in1k', '--out',
                             str(tmp_path / 'x.onnx')]) == 1
    assert 'is not an mmseg config' in capsys.readouterr().err
    assert os.listdir(tmp_path) == []

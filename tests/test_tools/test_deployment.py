"""ONNX export with an onnxruntime check, and torch.compile, of the HireMLP backbone."""
import os

import onnx
import pytest
import torch
from conftest import load_tool

from mmhire.models import HireMLP

export_tool = load_tool('deployment/export_onnx.py')


@pytest.mark.parametrize('shape', [(224, 224), (193, 257)])
def test_onnx_export_matches_pytorch(tmp_path, capsys, shape):
    """193x257 is not a multiple of any region size, so every stage pads."""
    out = tmp_path / 'hire_t.onnx'
    assert export_tool.main(['--arch', 'tiny', '--shape', *map(str, shape), '--out',
                             str(out), '--tolerance', '1e-4']) == 0
    printed = capsys.readouterr().out
    difference = float(printed.split('max relative difference ')[1].split()[0])
    assert difference < 1e-4
    model = onnx.load(str(out))
    assert model.opset_import[0].version == 17
    assert [o.name for o in model.graph.output] == ['out0', 'out1', 'out2', 'out3']


def test_onnx_export_refuses_a_too_small_input(tmp_path):
    with pytest.raises(ValueError, match='at least 32'):
        export_tool.main(['--shape', '16', '64', '--out', str(tmp_path / 'x.onnx')])
    assert not os.path.exists(tmp_path / 'x.onnx')


def test_torch_compile_matches_eager():
    arch = dict(HireMLP.arch_zoo['tiny'], depths=[1, 1, 2, 1], channels=[16, 32, 48, 64])
    model = HireMLP(arch, out_indices=(0, 1, 2, 3))
    model.init_weights()
    model.eval().switch_to_deploy()
    compiled = torch.compile(model)
    x = torch.randn(2, 3, 97, 131)
    with torch.no_grad():
        expected = model(x)
        got = compiled(x)
    for g, e in zip(got, expected):
        assert (g - e).abs().max() / e.abs().max() < 1e-5

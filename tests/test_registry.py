import importlib
import subprocess
import sys

import pytest
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

import mmhire
from mmhire.models import HireMLP


@pytest.mark.parametrize('library', ['mmdet', 'mmseg', 'mmpretrain'])
def test_resolves_from_every_scope(library):
    registry = importlib.import_module(f'{library}.registry').MODELS
    model = registry.build(dict(type='HireMLP', arch='t', out_indices=(1, 2)))
    assert isinstance(model, HireMLP)
    assert model.out_indices == [1, 2]
    init_default_scope(library)
    assert isinstance(MODELS.build(dict(type='HireMLP', arch='small')), HireMLP)


def test_root_registry():
    assert MODELS.get('HireMLP') is HireMLP
    assert mmhire.__version__


@pytest.mark.parametrize('library', ['mmdet', 'mmseg', 'mmpretrain'])
def test_custom_imports_from_a_plain_config(tmp_path, library):
    cfg_file = tmp_path / 'user_config.py'
    cfg_file.write_text(
        f"default_scope = '{library}'\n"
        "custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)\n"
        "backbone = dict(type='HireMLP', arch='tiny', out_indices=(0, 1, 2, 3))\n")
    cfg = Config.fromfile(str(cfg_file))
    init_default_scope(cfg.default_scope)
    assert isinstance(MODELS.build(cfg.backbone), HireMLP)


def test_import_mmhire_imports_no_downstream_library():
    code = ('import sys, mmhire; '
            'print(sorted(m for m in ("mmdet", "mmseg", "mmpretrain") if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == '[]'

"""`python -m mmhire deploy` where mmdeploy cannot run: a clear error naming the fix, on any
stack (these run on the default and the oldest stack; the deployment itself is tested on the
deployment stack, tests/test_tools/test_mmdeploy.py)."""
import sys

import pytest

from mmhire.deployment import deploy as deploy_api
from mmhire.utils import compat

pytestmark = pytest.mark.floor


def test_torch_too_new_for_mmdeploy(monkeypatch, tmp_path):
    monkeypatch.setattr(compat, 'TORCH_VERSION', (2, 9, 0))
    with pytest.raises(deploy_api.DeployError, match='make setup-deploy.*export_onnx.py'):
        deploy_api.deploy('configs/demo/hire_t_in1k_demo.py', 'x.pth',
                          work_dir=str(tmp_path / 'out'))
    assert not (tmp_path / 'out').exists()


def test_mmdeploy_not_installed(monkeypatch, tmp_path):
    monkeypatch.setattr(compat, 'TORCH_VERSION', (2, 8, 1))
    monkeypatch.setitem(sys.modules, 'mmdeploy', None)  # import mmdeploy -> ImportError
    with pytest.raises(deploy_api.DeployError, match='mmdeploy.*not installed.*make setup-deploy'):
        deploy_api.deploy('configs/demo/hire_t_in1k_demo.py', 'x.pth',
                          work_dir=str(tmp_path / 'out'))
    assert not (tmp_path / 'out').exists()


def test_openvino_needs_the_model_optimizer(monkeypatch):
    """A deployment to OpenVINO names openvino-dev, whose Model Optimizer mmdeploy runs."""
    monkeypatch.setattr(compat, 'TORCH_VERSION', (2, 1, 2))
    monkeypatch.setattr(deploy_api, 'model_optimizer', lambda: None)
    with pytest.raises(deploy_api.DeployError, match='openvino-dev 2023.3.*make setup-deploy'):
        deploy_api.check_environment('openvino')


def test_command_line_says_so(monkeypatch, capsys, tmp_path):
    from mmhire.__main__ import main
    monkeypatch.setattr(compat, 'TORCH_VERSION', (2, 14, 1))
    assert main(['deploy', 'configs/demo/hire_t_in1k_demo.py', 'x.pth',
                 '--work-dir', str(tmp_path / 'out')]) == 1
    assert 'mmdeploy cannot export with torch' in capsys.readouterr().err


def test_deploy_configs_are_listed_and_resolved():
    names = deploy_api.list_deploy_configs()
    assert set(deploy_api.DEFAULT_DEPLOY_CONFIGS.values()) <= set(names)
    assert {'classification_onnxruntime_static-224x224', 'segmentation_onnxruntime_static-512x512',
            'instance-seg_onnxruntime_static-800x1344'} <= set(names)
    for task, size in [('classification', '224x224'), ('segmentation', '512x512'),
                       ('instance-seg', '800x1344')]:
        assert {f'{task}_openvino_dynamic-{size}', f'{task}_openvino_static-{size}'} <= set(names)
    for name in names:
        assert deploy_api.resolve_deploy_config(name).endswith(f'configs/deploy/{name}.py')
    with pytest.raises(deploy_api.DeployError, match='neither a file nor'):
        deploy_api.resolve_deploy_config('tensorrt_fp16_dynamic')

"""python -m mmhire.doctor: passes on this installation, and names each breakage with its
fix when one is simulated."""
import io
import subprocess
import sys

import pytest

from mmhire import doctor


def test_doctor_passes_here():
    result = subprocess.run([sys.executable, '-m', 'mmhire.doctor'], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith('[')]
    checks = {line.split(']')[1].split(':')[0].strip() for line in lines}
    assert {'torch', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain', 'registry',
            'checkpoint loading'} <= checks
    assert not any(line.startswith('[FAIL]') for line in lines)


def test_version_order():
    key = doctor._version_key
    assert key('2.0.0rc4') < key('2.0.0') < key('2.0.1') < key('2.1.0') < key('2.2.0')
    assert key('0.10.7') > key('0.8.3')


def test_ranges_come_from_the_libraries():
    assert doctor.accepted_ranges('mmdet')['mmcv'] == ('2.0.0rc4', '2.2.0')
    assert set(doctor.accepted_ranges('mmseg')) == {'mmcv', 'mmengine'}


def test_versions_outside_ranges_fail():
    versions = {'mmdet': '3.3.0', 'mmsegmentation': '1.2.2', 'mmpretrain': '1.2.0',
                'mmcv': '2.2.0', 'mmengine': '0.10.7'}
    found = {f.check: f for f in doctor.check_versions(versions.get)}
    assert found['mmdet'].status == doctor.FAIL
    assert 'mmcv 2.2.0 is outside >=2.0.0rc4, <2.2.0' in found['mmdet'].detail
    assert found['mmdet'].fix
    assert found['mmpretrain'].status == doctor.OK  # accepts mmcv < 2.4.0
    del versions['mmsegmentation']
    found = {f.check: f for f in doctor.check_versions(versions.get)}
    assert found['mmseg'].status == doctor.WARN and 'not installed' in found['mmseg'].detail


def test_mmcv_without_ops(monkeypatch):
    monkeypatch.setitem(sys.modules, 'mmcv._ext', None)
    (finding, ) = doctor.check_mmcv()
    assert finding.status == doctor.FAIL and 'without its compiled ops' in finding.detail
    assert 'setup_env.sh' in finding.fix  # the tests run in the checkout's own environment


def test_fixes_in_a_users_own_environment(monkeypatch):
    """Outside the checkout's environments the fixes are steps in that environment, not
    `make setup` in a checkout the user may not have."""
    assert doctor.checkout_environment() is not None
    monkeypatch.setattr(doctor.sys, 'prefix', '/opt/conda/envs/my-project')
    assert doctor.checkout_environment() is None
    monkeypatch.setitem(sys.modules, 'mmcv._ext', None)
    (finding, ) = doctor.check_mmcv()
    assert 'MMCV_WITH_OPS=1' in finding.fix and 'make setup' not in finding.fix
    versions = {'mmdet': '3.3.0', 'mmpretrain': '1.2.0', 'mmcv': '2.1.0', 'mmengine': '0.10.7'}
    found = {f.check: f for f in doctor.check_versions(versions.get)}
    assert 'pip install mmdet==3.3.0 mmsegmentation==1.2.2' in found['mmseg'].fix


def test_mmcv_built_for_another_torch(monkeypatch):
    real = doctor.importlib.import_module

    def fake(name, *args):
        if name == 'mmcv._ext':
            raise ImportError('_ext.so: undefined symbol: _ZN3c1017RegisterOperators')
        return real(name, *args)

    monkeypatch.setattr(doctor.importlib, 'import_module', fake)
    (finding, ) = doctor.check_mmcv()
    assert finding.status == doctor.FAIL and 'different torch' in finding.detail
    assert 'undefined symbol' in finding.detail and 'rebuild mmcv' in finding.fix


def test_unresolved_registry_and_exit_status(monkeypatch):
    from mmengine.registry import Registry
    monkeypatch.setattr(Registry, 'get', lambda self, key: None)
    out = io.StringIO()
    assert doctor.run(checks=(doctor.check_registry, ), out=out) == 1
    text = out.getvalue()
    assert "[FAIL] registry: 'HireMLP' does not resolve" in text
    assert "custom_imports=dict(imports=['mmhire'])" in text
    assert '1 problem(s)' in text


@pytest.mark.parametrize('status,code', [(doctor.OK, 0), (doctor.WARN, 0), (doctor.FAIL, 1)])
def test_exit_status_follows_worst_finding(status, code):
    out = io.StringIO()
    assert doctor.run(checks=(lambda: [doctor.Finding(status, 'x', 'y', 'z')], ),
                      out=out) == code


@pytest.mark.floor
@pytest.mark.parametrize('version,status,words', [
    ('2.0.1', doctor.FAIL, ['older than the oldest supported, 2.1', 'install torch >= 2.1']),
    ('2.1.2+cu121', doctor.OK, ['supported: 2.1 to 2.14.1 tested']),
    ('2.14.1', doctor.OK, ['supported']),
    ('2.15.0', doctor.WARN, ['newer than the newest torch mmhire was tested with (2.14.1)']),
])
def test_torch_outside_the_tested_range_is_named(version, status, words):
    finding = doctor.torch_version_finding(version)
    assert finding.status == status
    assert version in finding.detail
    for word in words:
        assert word in str(finding)


def test_missing_pkg_resources_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, 'pkg_resources', None)  # importing it now fails
    finding, = doctor.check_setuptools()
    assert finding.status == doctor.FAIL
    assert "mmdet::" in finding.detail and "setuptools<81" in finding.fix


@pytest.mark.parametrize('version,words', [
    (None, 'none is installed'), ('1.7.2', 'mmcv 1.7.2 is installed'),
    ('2.2.0', 'mmcv 2.2.0 is installed')])
def test_import_needs_a_supported_mmcv(version, words):
    """pip does not install mmcv for mmhire; `import mmhire` stops with the range and the
    command where mmcv is missing or outside it, and accepts mmcv-lite (no ops)."""
    fake = ("import sys, types\n"
            "sys.modules['mmcv'] = None\n" if version is None else
            "import sys, types\n"
            f"m = types.ModuleType('mmcv'); m.__version__ = {version!r}\n"
            "sys.modules['mmcv'] = m\n")
    result = subprocess.run([sys.executable, '-c', fake + 'import mmhire'],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert 'mmhire needs mmcv >= 2.0.0rc4, < 2.2.0' in result.stderr
    assert words in result.stderr and 'mmcv-lite==2.1.0' in result.stderr


def test_mmcv_lite_is_enough_to_import():
    """mmcv-lite reports mmcv's version and has no `_ext`: mmhire imports and builds."""
    code = ("import sys; sys.modules['mmcv._ext'] = None\n"
            "import mmhire, torch\n"
            "print(len(mmhire.HireMLP('tiny')(torch.zeros(1, 3, 64, 64))))")
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '1'


def test_a_missing_runtime_names_the_deploy_extra(monkeypatch):
    from mmhire.deployment.export import onnx_session
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    with pytest.raises(ImportError, match=r"running an ONNX file needs onnxruntime.*"
                       r"pip install 'mmhire\[deploy\]'"):
        onnx_session('model.onnx')

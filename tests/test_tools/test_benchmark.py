"""tools/analysis_tools/benchmark.py runs every model it offers and writes its table, data and
chart; with_cp lowers the backbone's peak training memory."""
import json
import tempfile

import pytest
from conftest import load_tool

benchmark = load_tool('analysis_tools/benchmark.py')


def test_benchmark_writes_table_json_and_chart(tmp_path, capsys):
    models = sorted(set(benchmark.BUILDERS) - {'hire_s_compiled', 'hire_b'})
    assert benchmark.main([
        '--models', *models, '--sizes', '64', '--batch-size', '2', '--repeats', '1',
        '--warmup', '0', '--modes', 'infer_fp32', 'train_bf16', '--out-dir', str(tmp_path)
    ]) == 0
    data = json.loads((tmp_path / 'benchmark.json').read_text())
    bf16 = benchmark.cpu_has_bf16(benchmark.cpu_info())
    assert data['matmul_gflops']['fp32'] > 0
    assert (data['matmul_gflops'].get('bf16', 0) > 0) == bf16
    rows = data['results']
    modes = ('infer_fp32', 'train_bf16') if bf16 else ('infer_fp32', )
    assert {(r['model'], r['mode']) for r in rows} == {
        (m, mode) for m in models for mode in modes}
    for row in rows:
        assert row['images_per_s'] > 0 and row['min'] <= row['seconds'] <= row['max']
        assert row['gmacs'] > 0 and row['peak_mib'] >= 0
    table = (tmp_path / 'benchmark.md').read_text()
    assert table.count('\n| ') == len(rows) + 1  # header and one line per measurement
    assert 'Large-matmul rate' in table and 'threads' in table
    assert (tmp_path / 'benchmark.png').stat().st_size > 1000
    assert 'hire_s_reference' in capsys.readouterr().out


def test_cpu_without_bf16_skips_bf16(tmp_path, monkeypatch, capsys):
    """On a CPU without bf16 instructions (torch's capability AVX2, as on a first-generation
    AMD EPYC, where the bf16 probe alone ran for over 30 minutes) the bf16 probe and modes are
    left out, and the table says so; the CPU is named with family, model and ISA flags."""
    monkeypatch.setattr(benchmark, 'cpu_info', lambda: dict(
        cpu='AMD EPYC 7571', family='23', model='1', isa=['avx2'], capability='AVX2'))
    probed = []
    monkeypatch.setattr(benchmark, 'matmul_rate', lambda device, dtype: probed.append(dtype)
                        or 50.)
    assert benchmark.main(['--models', 'hire_t', '--sizes', '64', '--batch-size', '1',
                           '--repeats', '1', '--warmup', '0', '--modes', 'infer_fp32',
                           'infer_bf16', 'train_bf16', '--out-dir', str(tmp_path)]) == 0
    import torch
    assert probed == [torch.float32]
    data = json.loads((tmp_path / 'benchmark.json').read_text())
    assert [r['mode'] for r in data['results']] == ['infer_fp32']
    table = (tmp_path / 'benchmark.md').read_text()
    assert 'bf16 left out (infer_bf16, train_bf16): this CPU has no bf16 instructions' in table
    assert 'AMD EPYC 7571 (family 23, model 1; avx2; torch capability AVX2)' in table
    assert 'no bf16 instructions' in capsys.readouterr().out
    assert not benchmark.cpu_has_bf16(dict(isa=['avx2', 'avx512f'], capability='AVX512'))
    assert benchmark.cpu_has_bf16(dict(isa=['avx2', 'avx512f', 'avx512_bf16']))
    assert benchmark.cpu_has_bf16(dict(isa=['avx2', 'amx_bf16']))


def test_benchmark_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        benchmark.main(['--sizes', '16'])
    with pytest.raises(SystemExit, match='unknown model'):
        benchmark.build_model('resnet9000')


def test_with_cp_lowers_peak_training_memory():
    """The tool's detection-sized measurement (2 x 800x1216) is in docs/benchmarks.md; here
    the same measurement at a smaller size."""
    memory = benchmark.checkpoint_memory('small', (256, 384), 2)
    assert memory['reduction'] >= 0.3, memory


def test_inference_is_timed_before_any_training_step(monkeypatch):
    """A training step leaves the C allocator holding memory that makes later inference
    steps faster, so every inference measurement is taken first, in its own round-robin."""
    made, groups = [], []

    def make_step(model, mode, x):
        def step():
            pass
        step.mode = mode
        made.append(step)
        return step

    def measure(steps, warmup, repeats, device):
        groups.append([step.mode for step in steps])
        return [dict(seconds=1., min=1., max=1., peak_mib=0.) for _ in steps]

    monkeypatch.setattr(benchmark, 'make_step', make_step)
    monkeypatch.setattr(benchmark, 'measure_interleaved', measure)
    args = benchmark.parse_args(['--models', 'hire_t', 'resnet50', '--sizes', '64',
                                 '--modes', 'train_fp32', 'infer_fp32', 'infer_bf16'])
    rows = benchmark.run(args)
    assert groups == [['infer_fp32', 'infer_bf16'] * 2, ['train_fp32'] * 2]
    assert [r['mode'] for r in rows] == [step.mode for step in made]  # rows keep their order


def test_sizes_may_be_rectangular_with_their_own_batch(monkeypatch):
    assert benchmark.parse_size('224') == (224, 224, None)
    assert benchmark.parse_size('800x1216@2') == (800, 1216, 2)
    for bad in ('800by1216', '224@0'):
        with pytest.raises(Exception, match='224, 800x1216 or 800x1216@2|at least 1'):
            benchmark.parse_size(bad)
    shapes = []
    monkeypatch.setattr(benchmark, 'make_step', lambda model, mode, x: shapes.append(
        tuple(x.shape)))
    monkeypatch.setattr(benchmark, 'measure_interleaved', lambda steps, *a: [
        dict(seconds=1., min=1., max=1., peak_mib=0.) for _ in steps])
    rows = benchmark.run(benchmark.parse_args(['--models', 'hire_t', '--sizes', '64',
                                               '40x72@3', '--modes', 'infer_fp32']))
    assert shapes == [(16, 3, 64, 64), (3, 3, 40, 72)]
    assert [(r['size'], r['batch']) for r in rows] == [('64', 16), ('40x72', 3)]


def test_deployed_rows(tmp_path, monkeypatch):
    """ONNX Runtime and OpenVINO rows beside PyTorch's: each deployed model is checked against
    PyTorch when it is built; bf16 runs on OpenVINO only, training on neither (and bf16 not at
    all on a CPU without bf16 instructions, which the benchmark leaves out there). The exported
    files are gone once the runtimes hold them."""
    scratch = tmp_path / 'tmp'
    scratch.mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(scratch))
    models = ['hire_t', 'hire_t_ort', 'hire_t_openvino', 'resnet50_ort']
    assert benchmark.main([
        '--models', *models, '--sizes', '64', '48x80@1', '--batch-size', '2', '--repeats', '1',
        '--warmup', '0', '--modes', 'infer_fp32', 'infer_bf16', 'train_fp32',
        '--out-dir', str(tmp_path)]) == 0
    rows = json.loads((tmp_path / 'benchmark.json').read_text())['results']
    got = {(r['model'], r['mode'], r['size']) for r in rows}
    expected = {(m, 'infer_fp32', s) for m in models for s in ('64', '48x80')}
    if benchmark.cpu_has_bf16(benchmark.cpu_info()):
        expected |= {(m, 'infer_bf16', s) for m in ('hire_t', 'hire_t_openvino')
                     for s in ('64', '48x80')}
    expected |= {('hire_t', 'train_fp32', s) for s in ('64', '48x80')}
    assert got == expected
    assert all(r['images_per_s'] > 0 for r in rows)
    assert list(scratch.iterdir()) == []


def test_failed_export_leaves_no_files(tmp_path, monkeypatch):
    scratch = tmp_path / 'tmp'
    scratch.mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(scratch))

    def fail(self, mode, x):
        raise RuntimeError('deliberate failure after the export')

    monkeypatch.setattr(benchmark.DeployedRunner, 'step', fail)
    with pytest.raises(RuntimeError, match='deliberate'):
        benchmark.main(['--models', 'hire_t_ort', '--sizes', '48', '--batch-size', '1',
                        '--repeats', '1', '--warmup', '0', '--modes', 'infer_fp32',
                        '--out-dir', str(tmp_path / 'out')])
    assert list(scratch.iterdir()) == []


def test_deployed_model_on_cuda_is_refused(capsys):
    with pytest.raises(SystemExit):
        benchmark.main(['--models', 'hire_t_ort', '--device', 'cuda', '--sizes', '64'])
    assert 'hire_t_ort run on the CPU only' in capsys.readouterr().err


def test_gpu_table_names_the_gpu_driver_and_cuda():
    env = dict(cpu='some CPU', gpu='NVIDIA H200', driver='580.1', cuda='13.0', torch='2.11.0',
               threads=16, device='cuda')
    header = benchmark.markdown([], env, dict(fp32=1.0, bf16=2.0)).splitlines()[0]
    assert header.startswith('Machine: some CPU, NVIDIA H200 (driver 580.1, CUDA 13.0); '
                             'torch 2.11.0')

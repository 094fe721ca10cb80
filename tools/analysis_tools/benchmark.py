"""Measure inference throughput, training-step time and peak memory of classifiers.

    python tools/analysis_tools/benchmark.py [--models hire_s hire_s_reference resnet50 ...]
        [--batch-size 16] [--sizes 224 800x1216@2] [--modes infer_fp32 infer_bf16 train_fp32
        train_bf16] [--warmup 3] [--repeats 10] [--threads N] [--device cpu|cuda]
        [--out-dir work_dirs/benchmark]

All models run in one process on the same random batch. Each measurement has warm-up runs
and then ``--repeats`` timed runs of one batch, taken in turn with the other measurements;
the table gives the median and the spread (min-max) across those. All inference
measurements come first, before any training step has run. The same run also times a large
matrix product, so that the models' achieved GFLOP/s can be read as a fraction of what this
machine can do. It writes ``benchmark.md`` (table), ``benchmark.json`` (all numbers) and
``benchmark.png`` (chart) to ``--out-dir``.

Models: ``hire_{t,s,b}`` (mmhire's HireMLP with its default ``fast_path='auto'``, inference
in deploy form, i.e. BatchNorm folded into the convolutions), ``hire_s_plain`` (mmhire's
HireMLP with ``fast_path='off'``: the plain formulation, without deploy folding),
``hire_s_reference`` (the straightforward formulation), ``hire_s_compiled`` (hire_s under
``torch.compile(dynamic=True)``: one graph for every size; inference in deploy form),
``hire_s_nchw`` (deploy form with ``fast_path='off'`` and ``export_layout='nchw'``: exported,
its stages stay NCHW instead of the channels-last export form), and
mmpretrain's ``resnet50``, ``swin_t``, ``convnext_t``, ``poolformer_s24``. Every model is a
whole ImageNet classifier: backbone, global average pooling and a 1000-way linear layer.

Deployed models (inference only): any of them with ``_ort`` or ``_openvino`` appended
(``hire_s_ort``, ``resnet50_openvino``) is its inference form exported to ONNX at each size
(the TorchScript exporter; not every model's graph serves other sizes) and run by ONNX
Runtime or OpenVINO on
the CPU with as many threads as torch uses. OpenVINO runs ``infer_fp32`` in fp32 (its
precision hint set, since it would pick bf16 on CPUs with AMX) and ``infer_bf16`` in bf16;
ONNX Runtime runs ``infer_fp32`` only. Other modes of deployed models are left out.
"""
import argparse
import contextlib
import json
import os
import os.path as osp
import platform
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from mmhire.utils.compat import compile_kwargs, import_runtime

MODES = ('infer_fp32', 'infer_bf16', 'train_fp32', 'train_bf16')
DEFAULT_MODELS = ('hire_t', 'hire_s', 'hire_b', 'hire_s_plain', 'hire_s_reference',
                  'resnet50', 'swin_t', 'convnext_t', 'poolformer_s24')


class Classifier(nn.Module):
    """backbone -> last feature map -> global average pool -> linear."""

    def __init__(self, backbone: nn.Module, channels: int, num_classes: int = 1000,
                 norm: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.norm = norm if norm is not None else nn.Identity()
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        feat = feats[-1] if isinstance(feats, (tuple, list)) else feats
        feat = self.norm(feat)
        if feat.dim() == 4:
            feat = feat.mean(dim=(2, 3))
        return self.head(feat)


def _hire(arch: str, **settings) -> Callable[[], nn.Module]:
    """A HireMLP classifier with the backbone's ``settings`` (``fast_path``,
    ``export_layout``)."""

    def build():
        from mmhire.models import HireMLP
        backbone = HireMLP(arch, **settings)
        return Classifier(backbone, backbone.channels[-1])

    return build


def _mmpretrain(cfg: dict, channels: int) -> Callable[[], nn.Module]:

    def build():
        import mmpretrain.models  # noqa: F401  (registers the backbones)
        from mmengine.registry import DefaultScope
        from mmpretrain.registry import MODELS

        # whatever scope the process last set (an mmseg or mmdet model built before)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            backbone = MODELS.build(cfg)
        return Classifier(backbone, channels)

    return build


def _reference() -> nn.Module:
    from mmhire.models.hire_mlp_reference import ReferenceHireMLPNet
    return ReferenceHireMLPNet('small')  # already a whole classifier


BUILDERS: Dict[str, Callable[[], nn.Module]] = {
    'hire_t': _hire('tiny'),
    'hire_s': _hire('small'),
    'hire_b': _hire('base'),
    'hire_s_plain': _hire('small', fast_path='off'),
    'hire_s_nchw': _hire('small', fast_path='off', export_layout='nchw'),
    'hire_s_compiled': _hire('small'),
    'hire_s_reference': _reference,
    'resnet50': _mmpretrain(dict(type='ResNet', depth=50), 2048),
    'swin_t': _mmpretrain(dict(type='SwinTransformer', arch='tiny', img_size=224,
                                 pad_small_map=True), 768),
    'convnext_t': _mmpretrain(dict(type='ConvNeXt', arch='tiny', gap_before_final_norm=False),
                              768),
    'poolformer_s24': _mmpretrain(dict(type='PoolFormer', arch='s24'), 512),
}
#: The models that run inference in HireMLP's deploy form (BatchNorm folded).
DEPLOYED = frozenset({'hire_t', 'hire_s', 'hire_b', 'hire_s_compiled', 'hire_s_nchw'})


#: Runtimes a model can be deployed to, by the name's suffix.
RUNTIMES = ('ort', 'openvino')


def deployed_runtime(name: str):
    """(the PyTorch model's name, the runtime) for a deployed model's name, else (name, None)."""
    base, _, suffix = name.rpartition('_')
    if suffix in RUNTIMES and base in BUILDERS:
        return base, suffix
    return name, None


class DeployedRunner:
    """An ONNX export of a model's inference form, run by ONNX Runtime or OpenVINO."""

    def __init__(self, model: nn.Module, runtime: str, example: torch.Tensor, path: str,
                 threads: int) -> None:
        from mmhire.deployment.export import export_onnx
        export_onnx(model, example, path)
        self.runtime, self.path, self.threads = runtime, path, threads
        self.sessions = {}
        # what is timed must be the model: its fp32 scores against PyTorch's, once
        got = torch.as_tensor(np.asarray(self.session('f32')(example.numpy())[0]))
        with torch.inference_mode():
            expected = model(example)
        error = float((got - expected).abs().max() / expected.abs().max())
        if error > 1e-3:
            raise RuntimeError(f'the {runtime} model differs from PyTorch by {error:.1e}')

    def session(self, precision: str):
        if precision not in self.sessions:
            if self.runtime == 'ort':
                onnxruntime = import_runtime('onnxruntime', 'the benchmark\'s _ort models')
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = self.threads
                session = onnxruntime.InferenceSession(self.path, options,
                                                       providers=['CPUExecutionProvider'])
                self.sessions[precision] = lambda x: session.run(None, {'input': x})
            else:
                openvino = import_runtime('openvino', 'the benchmark\'s _openvino models')
                compiled = openvino.Core().compile_model(self.path, 'CPU', {
                    'INFERENCE_PRECISION_HINT': precision,
                    'INFERENCE_NUM_THREADS': self.threads,
                    'PERFORMANCE_HINT': 'LATENCY'})
                request = compiled.create_infer_request()
                self.sessions[precision] = lambda x: list(request.infer({0: x}).values())
        return self.sessions[precision]

    def supports(self, mode: str) -> bool:
        return mode == 'infer_fp32' or (self.runtime == 'openvino' and mode == 'infer_bf16')

    def step(self, mode: str, x: torch.Tensor) -> Callable[[], None]:
        run = self.session('bf16' if mode.endswith('bf16') else 'f32')
        array = x.cpu().numpy()
        return lambda: run(array)


def build_model(name: str) -> nn.Module:
    name = deployed_runtime(name)[0]
    if name not in BUILDERS:
        raise SystemExit(f'error: unknown model {name!r}; choose from {sorted(BUILDERS)}')
    return BUILDERS[name]()


def macs_per_image(model: nn.Module, height: int, width: int) -> int:
    from mmengine.analysis import FlopAnalyzer
    model = model.eval()
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, torch.zeros(1, 3, height, width))
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(analyzer.total())


def _proc_status(key: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1]) * 1024
    return 0


def peak_memory(step: Callable[[], None], device: torch.device) -> float:
    """Peak bytes one call of ``step`` needs above what was held before it: CUDA's allocator
    statistics on a GPU; on the CPU the process's peak resident set (VmHWM, reset just
    before) after the C allocator has returned its cached free memory to the system."""
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - start)
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # resets VmHWM to the current resident set
    except OSError:
        return float('nan')
    start = _proc_status('VmRSS')
    step()
    return float(_proc_status('VmHWM') - start)


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize()


def time_runs(step: Callable[[], None], warmup: int, repeats: int,
              device: torch.device) -> List[float]:
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def autocast(device: torch.device, bf16: bool):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def make_step(model: nn.Module, mode: str, x: torch.Tensor) -> Callable[[], None]:
    """One timed unit: a forward pass (inference) or forward, backward and AdamW step."""
    device = x.device
    bf16 = mode.endswith('bf16')
    # The mode is set on every call: inference and training steps of one model share it.
    if mode.startswith('infer'):

        def step():
            model.eval()
            with torch.inference_mode(), autocast(device, bf16):
                model(x)

        return step
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    target = torch.randint(0, 1000, (x.size(0), ), device=device)

    def step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, bf16):
            loss = nn.functional.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()

    return step


def measure_interleaved(steps: List[Callable[[], None]], warmup: int, repeats: int,
                        device: torch.device) -> List[Dict[str, float]]:
    """Times every step ``repeats`` times, taking them in turn (step 1, 2, ..., n, then 1
    again), so that a slow period of a shared machine hits all of them alike and their
    ratios hold."""
    for step in steps:
        for _ in range(warmup + 1):
            step()
    times: List[List[float]] = [[] for _ in steps]
    for _ in range(repeats):
        for k, step in enumerate(steps):
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times[k].append(time.perf_counter() - start)
    peaks = [peak_memory(step, device) for step in steps]
    results = []
    for k in range(len(steps)):
        median = statistics.median(times[k])
        results.append(dict(seconds=median, min=min(times[k]), max=max(times[k]),
                            peak_mib=peaks[k] / 2**20))
    return results


def _backbone_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:

    def step():
        model.zero_grad(set_to_none=True)
        loss = sum(out.float().mean() for out in model(x))
        loss.backward()

    return step


_CP_CHILD = """
import json, sys, torch
sys.path.insert(0, {tools!r})
from benchmark import _backbone_step, peak_memory
from mmhire.models import HireMLP
torch.manual_seed(0)
device = torch.device({device!r})
x = torch.randn({batch}, 3, {h}, {w}, device=device)
model = HireMLP({arch!r}, out_indices=(0, 1, 2, 3), with_cp={with_cp}).to(device).train()
step = _backbone_step(model, x)
step()
print(json.dumps(peak_memory(step, device)))
"""


def checkpoint_memory(arch: str = 'small', shape=(800, 1216), batch: int = 2,
                      device: str = 'cpu') -> Dict[str, float]:
    """Peak training memory of the HireMLP backbone alone (all four outputs, forward and
    backward) at a detection-sized input, without and with ``with_cp``. Each is measured in
    a fresh process, so that neither inherits the other's cached memory."""
    import subprocess
    peaks = {}
    for with_cp in (False, True):
        code = _CP_CHILD.format(tools=osp.dirname(osp.abspath(__file__)), device=device,
                                batch=batch, h=shape[0], w=shape[1], arch=arch,
                                with_cp=with_cp)
        result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                                check=True)
        peaks[with_cp] = float(result.stdout.strip().splitlines()[-1])
    return dict(arch=arch, shape=list(shape), batch=batch, peak_mib=peaks[False] / 2**20,
                peak_mib_with_cp=peaks[True] / 2**20,
                reduction=1 - peaks[True] / peaks[False])


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int = 2048,
                repeats: int = 10) -> float:
    """GFLOP/s of an n x n x n matrix product: the machine's large-matmul rate."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    times = time_runs(lambda: torch.mm(a, b), 3, repeats, device)
    return 2 * n**3 / statistics.median(times) / 1e9


def inference_form(name: str, model: nn.Module) -> nn.Module:
    """The model as it runs inference: HireMLP folds its BatchNorms (deploy form); the
    compiled variant goes through torch.compile."""
    import copy
    if name not in DEPLOYED:
        return model
    deployed = copy.deepcopy(model).eval()
    deployed.backbone.switch_to_deploy()
    if name.endswith('_compiled'):
        deployed = torch.compile(deployed, **compile_kwargs())  # one graph for every size
    return deployed


def training_form(name: str, model: nn.Module) -> nn.Module:
    if name.endswith('_compiled'):
        return torch.compile(model, **compile_kwargs())
    return model


def build_steps(args, device: torch.device,
                scratch: str) -> Tuple[List[Dict], List[Callable[[], None]]]:
    """One table row and one timed step per model, size and mode; deployed models are
    exported into ``scratch``, each file removed once its runtimes have loaded it."""
    rows, steps = [], []
    for name in args.models:
        torch.manual_seed(0)
        base, runtime = deployed_runtime(name)
        model = build_model(name).to(device)
        forms = dict(infer=inference_form(base, model), train=training_form(base, model))
        for height, width, batch in args.sizes:
            batch = batch or args.batch_size
            x = torch.randn(batch, 3, height, width, device=device)
            runner = None
            if runtime is not None:
                # exported at each size: not every model's graph serves other sizes (Swin's
                # window reshapes keep the traced batch)
                runner = DeployedRunner(forms['infer'], runtime, x.cpu(),
                                        osp.join(scratch, f'{base}_{height}x{width}.onnx'),
                                        torch.get_num_threads())
            macs = macs_per_image(model, height, width)
            size = str(height) if height == width else f'{height}x{width}'
            for mode in args.modes:
                if runner is not None:
                    if not runner.supports(mode):
                        print(f'{name}: {mode} left out (deployed models: inference only, '
                              'bf16 on OpenVINO only)', flush=True)
                        continue
                    steps.append(runner.step(mode, x))
                else:
                    steps.append(make_step(forms[mode.split('_')[0]], mode, x))
                rows.append(dict(model=name, mode=mode, size=size, batch=batch,
                                 gmacs=macs / 1e9, macs=macs))
            if runner is not None:
                os.remove(runner.path)
    return rows, steps


def run(args) -> List[Dict]:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == 'cuda' and args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    # left behind by no run, a failed one included
    with tempfile.TemporaryDirectory(prefix='mmhire-benchmark-') as scratch:
        rows, steps = build_steps(args, device, scratch)
    print(f'timing {len(steps)} measurements, {args.repeats} rounds', flush=True)
    # Inference is timed before any training step has run, as in a process that only serves
    # inference: a training step leaves the C allocator holding memory that later steps of
    # every model reuse without page faults (ResNet-50 inference here: 0.98 s per batch of
    # 16 before one, 0.60 s after), so mixing the two would make inference timings depend on
    # the order of the models.
    results = {}
    for phase in ('infer', 'train'):
        picked = [k for k, row in enumerate(rows) if row['mode'].startswith(phase)]
        if picked:
            timed = measure_interleaved([steps[k] for k in picked], args.warmup,
                                        args.repeats, device)
            results.update(zip(picked, timed))
    for k, row in enumerate(rows):
        row.update(results[k])
        row['images_per_s'] = row['batch'] / row['seconds']
        flops = 2 * row.pop('macs') * (1 if row['mode'].startswith('infer') else 3)
        row['gflops_per_s'] = flops * row['images_per_s'] / 1e9
        print(f'{row["model"]:>16} {row["mode"]:>10} {row["size"]:>8}px x{row["batch"]:<3} '
              f'{row["images_per_s"]:8.1f} img/s ({row["min"] * 1e3:.0f}-'
              f'{row["max"] * 1e3:.0f} ms/batch)  {row["gflops_per_s"]:6.0f} GFLOP/s  '
              f'peak {row["peak_mib"]:7.0f} MiB', flush=True)
    return rows


#: The CPU instruction sets that decide which kernels run, named in every table.
ISA_FLAGS = ('avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_tile', 'amx_bf16')


def cpu_info() -> Dict[str, object]:
    """The CPU as lscpu names it: model name, family, model, the ISA flags of
    :data:`ISA_FLAGS` it has, and torch's CPU capability (AVX2, AVX512, ...)."""
    info: Dict[str, object] = dict(cpu=platform.processor() or platform.machine())
    fields = {}
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(':')
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    if 'model name' in fields:
        info['cpu'] = fields['model name']
    for key in ('cpu family', 'model'):
        if key in fields:
            info[key.replace('cpu ', '')] = fields[key]
    flags = fields.get('flags', '').split()
    info['isa'] = [f for f in ISA_FLAGS if f in flags]
    capability = getattr(getattr(torch.backends, 'cpu', None), 'get_cpu_capability', None)
    info['capability'] = capability() if capability else 'unknown'
    return info


def cpu_has_bf16(info: Dict[str, object]) -> bool:
    """Whether the CPU computes bf16 products in hardware (avx512_bf16 or AMX). Where it does
    not (torch's capability AVX2: a first-generation AMD EPYC), a bf16 product has no fast
    kernel: the 2048^3 probe alone ran for over 30 minutes there."""
    isa = info.get('isa') or []
    if isa:
        return 'avx512_bf16' in isa or 'amx_bf16' in isa
    return info.get('capability') not in ('AVX2', 'DEFAULT', 'NO AVX')


def cpu_name(info: Dict[str, object]) -> str:
    """``AMD EPYC 9R14 (family 25, model 17; avx2, avx512f, avx512_bf16; torch AVX512)``."""
    details = []
    if 'family' in info:
        details.append(f'family {info["family"]}, model {info.get("model", "?")}')
    if info.get('isa') is not None:
        details.append(', '.join(info['isa']) or 'no AVX2')
    details.append(f'torch capability {info.get("capability")}')
    return f'{info["cpu"]} ({"; ".join(details)})'


def environment(device: torch.device) -> Dict[str, object]:
    cpu = cpu_info()
    info = dict(torch=torch.__version__, python=platform.python_version(),
                threads=torch.get_num_threads(), device=str(device), cpu=cpu_name(cpu),
                cpu_info=cpu)
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
        info['cuda'] = torch.version.cuda
        info['driver'] = _gpu_driver()
    return info


def _gpu_driver() -> str:
    """The NVIDIA driver's version, as nvidia-smi reports it ('unknown' without it)."""
    import subprocess
    try:
        out = subprocess.run(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
                             capture_output=True, text=True, timeout=30).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        out = []
    return out[0] if out else 'unknown'


def markdown(rows: List[Dict], env: Dict, rates: Dict[str, float]) -> str:
    lines = [
        f'Machine: {env["cpu"]}' + (f', {env["gpu"]} (driver {env["driver"]}, CUDA '
                                    f'{env["cuda"]})' if 'gpu' in env else '') +
        f'; torch {env["torch"]}, {env["threads"]} threads, device {env["device"]}.',
        '',
        'Large-matmul rate (2048^3) measured in the same run: ' +
        ', '.join(f'{k} {v:.0f} GFLOP/s' for k, v in rates.items()) + '.' +
        (f' bf16 left out ({", ".join(env["no_bf16"]) or "none asked"}): this CPU has no '
         'bf16 instructions.' if 'no_bf16' in env else ''),
        '',
        '| model | mode | input | batch | images/s | ms/batch (median, min-max) | GMACs/img | '
        'GFLOP/s | of matmul rate | peak MiB |',
        '|---|---|---|---|---|---|---|---|---|---|',
    ]
    for r in rows:
        rate = rates.get('fp32') if 'fp32' in r['mode'] else rates.get('bf16')
        share = f'{100 * r["gflops_per_s"] / rate:.0f}%' if rate else ''
        lines.append(
            f'| {r["model"]} | {r["mode"]} | {r["size"]} | {r["batch"]} | '
            f'{r["images_per_s"]:.1f} | {r["seconds"] * 1e3:.0f} ({r["min"] * 1e3:.0f}-'
            f'{r["max"] * 1e3:.0f}) | {r["gmacs"]:.2f} | {r["gflops_per_s"]:.0f} | {share} | '
            f'{r["peak_mib"]:.0f} |')
    return '\n'.join(lines) + '\n'


def chart(rows: List[Dict], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    sizes = list(dict.fromkeys(r['size'] for r in rows))
    modes = [m for m in MODES if any(r['mode'] == m for r in rows)]
    models = list(dict.fromkeys(r['model'] for r in rows))
    fig, axes = plt.subplots(1, len(sizes), figsize=(7 * len(sizes), 0.5 * len(models) + 2),
                             squeeze=False)
    for ax, size in zip(axes[0], sizes):
        height = 0.8 / max(len(modes), 1)
        for k, mode in enumerate(modes):
            values = [next((r['images_per_s'] for r in rows if r['model'] == m and
                            r['mode'] == mode and r['size'] == size), 0) for m in models]
            ax.barh([i + k * height for i in range(len(models))], values, height, label=mode)
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(models))])
        ax.set_yticklabels(models)
        ax.invert_yaxis()
        ax.set_xlabel('images/s')
        batch = next(r['batch'] for r in rows if r['size'] == size)
        ax.set_title(f'{size}, batch {batch}')
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_size(text: str):
    """``'224'`` -> (224, 224, None); ``'800x1216@2'`` -> (800, 1216, 2)."""
    try:
        shape, _, batch = text.partition('@')
        height, _, width = shape.lower().partition('x')
        parsed = (int(height), int(width or height), int(batch) if batch else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a size: 224, 800x1216 or '
                                         f'800x1216@2') from None
    if parsed[2] is not None and parsed[2] < 1:
        raise argparse.ArgumentTypeError(f'{text!r}: the batch after @ must be at least 1')
    return parsed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='+', default=list(DEFAULT_MODELS),
                        help=f'any of {sorted(BUILDERS)}')
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--sizes', type=parse_size, nargs='+', default=[parse_size('224')],
                        metavar='SIZE', help='input sizes: 224 (square), 800x1216 (HxW), '
                        'with @N for a batch of N there (800x1216@2); default: 224')
    parser.add_argument('--modes', nargs='+', default=list(MODES), choices=MODES)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--threads', type=int, default=0,
                        help='torch threads (default: torch\'s choice)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--tf32', action='store_true', help='allow TF32 matmuls on a GPU')
    parser.add_argument('--out-dir', default='work_dirs/benchmark')
    parser.add_argument('--cp-memory', action='store_true',
                        help='also measure with_cp on 2 images of 800x1216 (HireMLP-small)')
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error('--batch-size and --repeats must be at least 1, --warmup at least 0')
    if min(min(h, w) for h, w, _ in args.sizes) < 32:
        parser.error('--sizes must be at least 32 (the smallest input HireMLP takes)')
    deployed = [m for m in args.models if deployed_runtime(m)[1] is not None]
    if deployed and args.device != 'cpu':
        parser.error(f'{", ".join(deployed)} run on the CPU only: leave out --device or them')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error('--device cuda: no GPU is available here')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    env = environment(device)
    print(f'machine: {env["cpu"]}')
    rates = dict(fp32=matmul_rate(device, torch.float32))
    if device.type == 'cpu' and not cpu_has_bf16(env['cpu_info']):
        skipped = [m for m in args.modes if m.endswith('bf16')]
        args.modes = [m for m in args.modes if not m.endswith('bf16')]
        env['no_bf16'] = skipped
        print(f'bf16 left out ({", ".join(skipped) or "no bf16 mode asked"}; no bf16 matmul '
              f'probe): this CPU has no bf16 instructions (torch capability '
              f'{env["cpu_info"]["capability"]})')
    else:
        rates['bf16'] = matmul_rate(device, torch.bfloat16)
    print('matmul 2048^3: ' + ', '.join(f'{k} {v:.0f} GFLOP/s' for k, v in rates.items())
          + f', {torch.get_num_threads()} threads')
    if not args.modes:
        print('error: no mode left to measure', file=sys.stderr)
        return 2
    rows = run(args)
    memory = None
    if args.cp_memory:
        memory = checkpoint_memory(device=args.device)
        print(f'with_cp, HireMLP-{memory["arch"]} backbone, {memory["batch"]} x '
              f'{memory["shape"][0]}x{memory["shape"][1]}, forward + backward: peak '
              f'{memory["peak_mib"]:.0f} MiB -> {memory["peak_mib_with_cp"]:.0f} MiB '
              f'({100 * memory["reduction"]:.0f}% less)')
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'benchmark.md'), 'w') as f:
        f.write(markdown(rows, env, rates))
        if memory:
            f.write(f'\nwith_cp: HireMLP-{memory["arch"]} backbone, {memory["batch"]} images of '
                    f'{memory["shape"][0]}x{memory["shape"][1]}, forward and backward: peak '
                    f'{memory["peak_mib"]:.0f} MiB without, {memory["peak_mib_with_cp"]:.0f} '
                    f'MiB with ({100 * memory["reduction"]:.0f}% less).\n')
    with open(osp.join(args.out_dir, 'benchmark.json'), 'w') as f:
        json.dump(dict(environment=env, matmul_gflops=rates, results=rows,
                       with_cp_memory=memory), f, indent=1)
    chart(rows, osp.join(args.out_dir, 'benchmark.png'))
    print(f'wrote {args.out_dir}/benchmark.{{md,json,png}}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

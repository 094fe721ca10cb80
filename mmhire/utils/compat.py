"""The torch versions mmhire supports, and the few torch APIs whose spelling changed inside
that range, behind one name each.

Supported: torch 2.1 (what mmcv 2.1.0's prebuilt wheels were built for) up to the newest
release; CI runs the oldest and the newest tested versions below. Nothing here raises at
import time: :func:`check_torch` is called where an old torch would otherwise fail deep
inside (checkpoint loading) and by ``python -m mmhire.doctor``.
"""
import inspect
import re
from typing import Optional, Tuple

import torch

#: Oldest torch mmhire runs on.
MIN_TORCH = (2, 1)
#: The oldest and newest torch that CI runs the test suite on.
TESTED_TORCH = ('2.1.2', '2.14.1')
#: The newest torch mmdeploy 1.3 exports with: its rewrites hook the TorchScript exporter, and
#: from torch 2.9 ``torch.onnx.export`` uses the dynamo exporter, where they do not apply.
MMDEPLOY_NEWEST_TORCH = (2, 8)
#: The torch the deployment tests run on (the oldest tested stack, with mmdeploy).
MMDEPLOY_TESTED_TORCH = TESTED_TORCH[0]


def version_tuple(version: str) -> Tuple[int, ...]:
    """``'2.1.2+cu121'`` -> ``(2, 1, 2)``; a part that is not a number ends the tuple."""
    parts = []
    for part in version.split('+')[0].split('.'):
        match = re.match(r'\d+', part)
        if match is None:
            break
        parts.append(int(match.group()))
        if match.group() != part:
            break
    return tuple(parts)


TORCH_VERSION = version_tuple(torch.__version__)


def check_torch() -> None:
    """Raises if the installed torch is older than mmhire supports, naming both versions
    and the fix."""
    if TORCH_VERSION[:2] < MIN_TORCH:
        raise RuntimeError(
            f'mmhire needs torch >= {".".join(map(str, MIN_TORCH))}, but torch '
            f'{torch.__version__} is installed; install a newer torch (and an mmcv built for '
            f'it), e.g. torch 2.1.2 with the prebuilt mmcv 2.1.0 wheels')


#: The mmcv versions mmhire works with (mmdet 3.x and mmseg 1.x accept the same).
MMCV_MIN, MMCV_BELOW = '2.0.0rc4', '2.2.0'
MMCV_FIX = ('`mim install "mmcv>=2.0.0rc4,<2.2.0"` (with its ops, which mmdet and mmseg need; '
            'docs/install.md for a newer torch) or `pip install mmcv-lite==2.1.0` (the backbone '
            'and classifiers only)')


def check_mmcv() -> None:
    """Raises ImportError unless an mmcv (or mmcv-lite: the same package without compiled
    ops) in the supported range is importable. pip does not install mmcv for mmhire, as it
    does not for mmdet: it must be built for the user's torch, and an install must not
    replace it."""
    try:
        import mmcv
    except ImportError:
        raise ImportError(f'mmhire needs mmcv >= {MMCV_MIN}, < {MMCV_BELOW}, and none is '
                          f'installed: {MMCV_FIX}') from None
    from mmengine.utils import digit_version
    version = getattr(mmcv, '__version__', '0')
    if not digit_version(MMCV_MIN) <= digit_version(version) < digit_version(MMCV_BELOW):
        raise ImportError(f'mmhire needs mmcv >= {MMCV_MIN}, < {MMCV_BELOW}, but mmcv '
                          f'{version} is installed: {MMCV_FIX}')


def is_compiling() -> bool:
    """Whether the code runs under ``torch.compile`` (``torch.compiler.is_compiling`` is
    torch 2.3+; torch 2.1 and 2.2 have it under ``torch._dynamo``)."""
    compiler = getattr(torch, 'compiler', None)
    if compiler is not None and hasattr(compiler, 'is_compiling'):
        return compiler.is_compiling()
    from torch import _dynamo
    return _dynamo.is_compiling()


def is_exporting() -> bool:
    """Whether the code is being traced by ``torch.export`` (``torch.compiler.is_exporting``
    is torch 2.5+; older torch has no dynamo ONNX exporter to serve)."""
    compiler = getattr(torch, 'compiler', None)
    return bool(compiler is not None and hasattr(compiler, 'is_exporting')
                and compiler.is_exporting())


def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The dtype autocast runs ``device_type`` operators in, or None where autocast is off
    (``torch.is_autocast_enabled(device)`` and ``torch.get_autocast_dtype`` are torch 2.4+)."""
    if hasattr(torch, 'get_autocast_dtype'):
        if not torch.is_autocast_enabled(device_type):
            return None
        return torch.get_autocast_dtype(device_type)
    if device_type == 'cpu':
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    if device_type == 'cuda':
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None
    return None


#: Inductor settings HireMLP needs. torch's inductor (seen on 2.14), compiling a training graph
#: with dynamic shapes, fails in its channels-last layout choice for a view that the backward
#: keeps ("cannot determine truth value of Relational": it sorts symbolic strides without the
#: shape environment). Without that layout optimisation the graph compiles.
INDUCTOR_OPTIONS = {'layout_optimization': False}


def compile_kwargs(**options) -> dict:
    """Keyword arguments of ``torch.compile`` for HireMLP: ``dynamic=True`` unless given, and
    for the inductor backend :data:`INDUCTOR_OPTIONS`, through ``options`` (merged under the
    caller's own), or, since torch takes ``mode`` or ``options`` but not both, set in
    inductor's config when ``mode`` is given."""
    options = dict(dict(dynamic=True), **options)
    if options.get('backend', 'inductor') != 'inductor':
        return options
    if options.get('mode') is not None:
        import torch._inductor.config as inductor_config
        for key, value in INDUCTOR_OPTIONS.items():
            setattr(inductor_config, key, value)
        return options
    options['options'] = dict(INDUCTOR_OPTIONS, **(options.get('options') or {}))
    return options


def mmdeploy_supports_torch() -> bool:
    """Whether mmdeploy 1.3 can export with the installed torch (:data:`MMDEPLOY_NEWEST_TORCH`)."""
    return TORCH_VERSION[:2] <= MMDEPLOY_NEWEST_TORCH


def import_runtime(module: str, needed_for: str):
    """Imports ``module`` (onnx, onnxruntime, openvino); where it is missing, raises
    ImportError naming what needs it and the extra that installs it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f'{needed_for} needs {module}, which is not installed here: '
                          "pip install 'mmhire[deploy]' (onnx, onnxruntime and openvino)"
                          ) from None


def dynamo_exporter_available() -> Tuple[bool, str]:
    """Whether the dynamo ONNX exporter can run here, and if not, why."""
    dim = getattr(getattr(torch, 'export', None), 'Dim', None)  # torch.export.Dim: 2.2+
    if ('dynamo' not in inspect.signature(torch.onnx.export).parameters
            or not hasattr(dim, 'DYNAMIC')):
        return False, (f'torch {torch.__version__} has no dynamo ONNX exporter with '
                       f'Dim.DYNAMIC (torch >= 2.6); use the torchscript exporter')
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return False, ('the dynamo ONNX exporter needs the onnxscript package: '
                       'pip install onnxscript')
    return True, ''


def torchscript_export_kwargs() -> dict:
    """Keyword arguments that make ``torch.onnx.export`` use its TorchScript exporter:
    ``dynamo=False`` where it takes that argument (its default is the dynamo exporter from
    torch 2.9), nothing on older torch, whose only exporter it is."""
    if 'dynamo' in inspect.signature(torch.onnx.export).parameters:
        return {'dynamo': False}
    return {}

"""One switch between HireMLP's fast forms and the plain formulation.

Every fast form lives in this package beside the plain form it replaces, computes the same
numbers, and runs inside the module it speeds up, so hooks and module swaps see it. The
switch has three values:

- ``'off'``: the plain formulation everywhere (what ``hire_mlp.py`` reads like).
- ``'on'``: every fast form wherever it applies (CPU inference in float32/float64).
- ``'auto'`` (default): a fast form only where it was measured to beat the plain one on
  this kind of machine (see ``docs/benchmarks.md``).

It is set, from the strongest to the weakest, by :func:`fast_path` as a context manager, the
``fast_path`` argument of :class:`~mmhire.models.HireMLP`, or the ``MMHIRE_FAST_PATH``
environment variable.
"""
import functools
import os
import platform
from contextlib import contextmanager
from typing import Iterator, Optional

import torch

from mmhire.utils.compat import autocast_dtype, is_compiling

MODES = ('auto', 'on', 'off')
ENV_VARIABLE = 'MMHIRE_FAST_PATH'
_override: Optional[str] = None


def check_mode(mode: str, what: str = 'fast_path') -> str:
    """Returns ``mode`` if it is one of :data:`MODES`, else raises naming them."""
    if mode not in MODES:
        raise ValueError(f'{what}={mode!r}: choose one of {", ".join(map(repr, MODES))}')
    return mode


@contextmanager
def fast_path(mode: str) -> Iterator[None]:
    """Runs the enclosed code with the switch at ``mode`` for every HireMLP.

    Examples:
        >>> with fast_path('off'):   # the plain formulation, same parameters
        ...     outs = model(x)
    """
    global _override
    check_mode(mode)
    previous, _override = _override, mode
    try:
        yield
    finally:
        _override = previous


def resolve(module_mode: str = 'auto') -> str:
    """The mode in force for a module whose own setting is ``module_mode``."""
    if _override is not None:
        return _override
    if module_mode != 'auto':
        return module_mode
    return check_mode(os.environ.get(ENV_VARIABLE, 'auto'), ENV_VARIABLE)


@functools.lru_cache(maxsize=None)
def cpu_vendor() -> str:
    """``'intel'``, ``'amd'`` or ``'other'``, read from /proc/cpuinfo where there is one."""
    try:
        with open('/proc/cpuinfo') as f:
            info = f.read(4096)
    except OSError:
        info = platform.processor()
    if 'GenuineIntel' in info:
        return 'intel'
    if 'AuthenticAMD' in info:
        return 'amd'
    return 'other'


def cpu_inference(x: torch.Tensor) -> bool:
    """Whether ``x`` is on the path the fast forms serve: CPU inference in float32/float64,
    not under autocast, not traced (ONNX export) or compiled."""
    return (x.device.type == 'cpu' and not torch.is_grad_enabled()
            and x.dtype in (torch.float32, torch.float64) and autocast_dtype('cpu') is None
            and not torch.jit.is_tracing() and not is_compiling())


#: The fast forms, each with the CPU vendors where ``'auto'`` turns it on. Chosen from one-run
#: comparisons against the plain form on each machine (docs/benchmarks.md).
FORMS = {
    # one index_select shifts, wrap-pads and folds a region branch, and one undoes it
    'region_gather': frozenset({'intel', 'amd'}),
    # a 1x1 convolution as one batched matrix product on the NCHW map
    'pointwise_bmm': frozenset({'intel'}),
    # a stage run on cache-sized chunks of the batch
    'batch_chunks': frozenset({'intel', 'amd'}),
}


def use_fast_form(form: str, x: torch.Tensor, module_mode: str = 'auto') -> bool:
    """Whether the fast ``form`` runs for input ``x`` of a module set to ``module_mode``."""
    if is_compiling():
        return False  # decided first: torch 2.1's dynamo cannot read a missing variable
    mode = resolve(module_mode)
    if mode == 'off' or not cpu_inference(x):
        return False
    return mode == 'on' or cpu_vendor() in FORMS[form]

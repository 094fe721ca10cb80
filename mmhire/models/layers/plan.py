"""The plan of one HireMLP forward: which implementation each module runs, decided once.

Every fast form lives in this package beside the plain form it replaces, computes the same
numbers, and runs inside the module it speeds up, so hooks and module swaps see it. Which
forms run, and in which layout the stages get their maps, is decided once per forward, at
the top of :meth:`HireMLP.forward <mmhire.models.HireMLP.forward>`, into a frozen
:class:`Plan` that the modules read with :func:`current_plan`. A module called on its own,
outside a HireMLP forward, reads :data:`PLAIN` unless it runs inside :func:`use_plan`.

The model's one ``fast_path`` setting has three values:

- ``'off'``: the plain formulation everywhere (what ``hire_mlp.py`` reads like).
- ``'on'``: every fast form wherever it applies (CPU inference in float32/float64).
- ``'auto'`` (default): a fast form only where it was measured to beat the plain one on
  this kind of machine (:data:`FORMS`, docs/benchmarks.md).

From the strongest to the weakest: :func:`fast_path` as a context manager, the model's
``fast_path`` argument (or attribute), the ``MMHIRE_FAST_PATH`` environment variable, which
:func:`make_plan` reads at most once per forward and only where the model says ``'auto'``.
The layout of an ONNX export is a setting of its own (:mod:`.layout`).
"""
import dataclasses
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
    """Runs the enclosed code with the fast-path setting at ``mode`` for every HireMLP.

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


def resolve(model_mode: str = 'auto') -> str:
    """The mode in force for a model whose own setting is ``model_mode``; reads the
    environment only when neither the context manager nor the model decides."""
    if _override is not None:
        return _override
    if model_mode != 'auto':
        return model_mode
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


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the modules of one HireMLP forward run.

    Args:
        channels_last (bool): The maps the modules get are (B, H, W, C), the export form of
            :mod:`.layout`. Defaults to False.
        region_gather (bool): The region MLPs fold and unfold with :class:`.RegionGathers`.
            Defaults to False.
        pointwise_bmm (bool): The 1x1 convolutions run as :func:`.pointwise_bmm`.
            Defaults to False.
        batch_chunks (bool): The backbone runs each stage on cache-sized chunks of the batch.
            Defaults to False.
    """

    channels_last: bool = False
    region_gather: bool = False
    pointwise_bmm: bool = False
    batch_chunks: bool = False

    def replace(self, **changes) -> 'Plan':
        """A copy of this plan with ``changes``."""
        return dataclasses.replace(self, **changes)


#: The plain formulation on NCHW maps: what a module reads outside a HireMLP forward, and what
#: every forward under ``torch.compile`` runs.
PLAIN = Plan()
_current = PLAIN


def current_plan() -> Plan:
    """The plan of the HireMLP forward now running (:data:`PLAIN` outside one)."""
    return _current


@contextmanager
def use_plan(plan: Plan) -> Iterator[None]:
    """Runs the enclosed modules with ``plan``.

    Examples:
        >>> with use_plan(Plan(region_gather=True)), torch.no_grad():
        ...     y = region_mlp(x)   # a module on its own, told to use a fast form
    """
    global _current
    previous, _current = _current, plan
    try:
        yield
    finally:
        _current = previous


def make_plan(x: torch.Tensor, model_mode: str = 'auto', channels_last: bool = False) -> Plan:
    """The plan of a forward on ``x`` by a model whose ``fast_path`` is ``model_mode``, its
    stages ``channels_last`` or not (:func:`.layout.exports_channels_last`).

    Under ``torch.compile`` and ``torch.export`` no fast form runs, decided before anything
    else: torch 2.1's dynamo cannot trace the read of a missing environment variable."""
    if is_compiling():
        return Plan(channels_last=True) if channels_last else PLAIN
    mode = resolve(model_mode)
    forms = {}
    if mode != 'off' and cpu_inference(x):
        vendor = cpu_vendor()
        forms = {form: mode == 'on' or vendor in vendors for form, vendors in FORMS.items()}
    plan = Plan(channels_last=channels_last, **forms)
    return PLAIN if plan == PLAIN else plan  # one object: the backbone tests it by identity

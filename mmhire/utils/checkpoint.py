"""Safe, crash-proof checkpoint files.

Every checkpoint mmhire reads goes through :func:`safe_load`, which builds tensors and plain
containers and refuses any other object, so a crafted file cannot run code while it is
unpickled. mmengine's own training checkpoints hold a few more types (its message hub's
``HistoryBuffer`` objects and the numpy arrays inside them); exactly those are allow-listed,
nothing else. On torch >= 2.6 this is ``torch.load(weights_only=True)`` with torch's own
allow-list API. Older torch cannot allow-list such types (no ``safe_globals``, and its
weights-only unpickler builds no objects), so there ``torch.load`` is given an unpickler that
resolves only torch's own weights-only globals and the same allow-list. Importing mmhire makes
mmengine's loader for local files (used by ``--resume``, ``load_from`` and ``Pretrained``
init) this one.

Every checkpoint mmhire writes goes to a file beside its target first and is renamed into
place once complete (:mod:`mmhire.utils.fileio`), so a killed process never leaves a
half-written file under a checkpoint's name.
"""
import _compat_pickle
import collections
import io
import os.path as osp
import pickle
import re
import struct
import types
import zipfile
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .compat import TORCH_VERSION, check_torch
from .fileio import write_atomic

_BUILTIN_STATISTICS = frozenset({'min', 'max', 'current', 'mean'})


Allowed = Union[Callable, Tuple[Callable, str]]


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot or must not be loaded."""


def _history_buffer_statistic(owner: Any, name: str) -> Any:
    """Stands in for ``getattr`` while unpickling.

    ``HistoryBuffer`` pickles its table of statistics methods as ``getattr(HistoryBuffer,
    'mean')`` and so on; this allows those lookups and nothing else.
    """
    from mmengine.logging import HistoryBuffer
    allowed = _BUILTIN_STATISTICS | set(HistoryBuffer._statistics_methods)
    if owner is HistoryBuffer and name in allowed and not name.startswith('_'):
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f'refused getattr({getattr(owner, "__name__", type(owner).__name__)}, {name!r}): '
        f'only HistoryBuffer statistics may be looked up while loading a checkpoint')


def _latin1_encode(text: Any, encoding: str = 'utf-8') -> bytes:
    """Stands in for ``_codecs.encode`` while unpickling.

    Pickle protocol 2 stores bytes (numpy 1's array and scalar data among them) as
    ``_codecs.encode(<str>, 'latin1')``; this allows that and nothing else.
    """
    if isinstance(text, str) and encoding in ('latin1', 'latin-1'):
        return text.encode('latin1')
    raise pickle.UnpicklingError(
        f'refused _codecs.encode({type(text).__name__}, {encoding!r}): only latin1 text, '
        f'the way pickle stores bytes, may be encoded while loading a checkpoint')


def _numpy_globals() -> List[Allowed]:
    """numpy's array and scalar reconstructors, under the module names numpy 1 and 2
    pickle them with."""
    multiarray = np.core.multiarray if hasattr(np, 'core') else np._core.multiarray
    found: List[Allowed] = [np.ndarray, np.dtype]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        found.append((multiarray._reconstruct, f'{module}._reconstruct'))
        found.append((multiarray.scalar, f'{module}.scalar'))
    found.extend(type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDGUSV')
    return found


def allowed_globals() -> List[Allowed]:
    """The non-tensor types an mmengine training checkpoint holds: the message hub's
    ``HistoryBuffer``, numpy arrays, dtypes and scalars, and ``getattr`` restricted to
    ``HistoryBuffer``'s statistics methods."""
    from mmengine.logging import HistoryBuffer
    return [HistoryBuffer, (_history_buffer_statistic, 'builtins.getattr'),
            (_history_buffer_statistic, '__builtin__.getattr')] + _numpy_globals()


#: torch.load(weights_only=True) takes (object, name) allow-list entries from torch 2.6 on.
NATIVE_ALLOW_LIST = TORCH_VERSION[:2] >= (2, 6)

# Failures that mean the bytes are not a readable checkpoint. Anything else (an
# AttributeError, an ImportError, ...) is a problem of the environment and is not blamed on
# the file.
_UNREADABLE = (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, KeyError,
               IndexError, struct.error, UnicodeDecodeError, zipfile.BadZipFile)


def _named(entries: Sequence[Allowed]) -> Dict[str, Callable]:
    """``{'module.name': object}`` for allow-list entries."""
    named = {}
    for entry in entries:
        obj, name = entry if isinstance(entry, tuple) else (
            entry, f'{entry.__module__}.{entry.__qualname__}')
        named[name] = obj
    return named


@contextmanager
def _allow_listed(entries: Sequence[Allowed]) -> Iterator[None]:
    with torch.serialization.safe_globals(list(entries)):
        yield


# What torch >= 2.6 allows by default beyond what torch 2.1 does (mmdet's checkpoints hold a
# Counter; pickle protocol 2 stores numpy 1's bytes through _codecs.encode), so that a file
# loads alike on every supported torch.
_NEWER_TORCH_DEFAULTS: List[Allowed] = [
    collections.Counter, bytearray, complex, set, (_latin1_encode, '_codecs.encode')]


def _restricted_pickle_module(entries: Sequence[Allowed]) -> types.ModuleType:
    """A pickle module for ``torch.load(pickle_module=...)`` whose unpickler resolves only
    the globals torch's weights-only loader allows and ``entries``; every other global is
    refused with the message torch's weights-only loader gives."""
    from torch import _weights_only_unpickler
    allowed = dict(_weights_only_unpickler._get_allowed_globals())
    allowed.update(_named(_NEWER_TORCH_DEFAULTS))
    allowed.update(_named(entries))

    class RestrictedUnpickler(pickle.Unpickler):

        def find_class(self, module: str, name: str) -> Any:
            # protocol 2 names Python 2 modules (__builtin__.set): map them as pickle does
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
            found = allowed.get(f'{module}.{name}')
            if found is None:
                raise pickle.UnpicklingError(
                    f'Weights only load failed. Unsupported global: GLOBAL {module}.{name} '
                    f'was not an allowed global by default.')
            return found

    module = types.ModuleType('mmhire_restricted_pickle')
    module.Unpickler = RestrictedUnpickler
    module.load = lambda file, **kwargs: RestrictedUnpickler(file, **kwargs).load()
    module.loads = lambda data, **kwargs: RestrictedUnpickler(io.BytesIO(data), **kwargs).load()
    return module


def _torch_load(path: str, map_location: Any, entries: Sequence[Allowed],
                native: bool) -> Any:
    if native:
        with _allow_listed(entries):
            return torch.load(path, map_location=map_location, weights_only=True)
    # The restricted pickle module is what keeps this load safe; torch accepts a custom
    # pickle module only with its own weights-only unpickler turned off.
    return torch.load(path, map_location=map_location, weights_only=False,
                      pickle_module=_restricted_pickle_module(entries))


def safe_load(path: str, map_location: Any = 'cpu', allowed: Optional[Sequence[Allowed]] = None,
              native: Optional[bool] = None) -> Any:
    """Loads a checkpoint file, allowing tensors, plain containers and the ``allowed``
    types, and nothing else.

    Args:
        path (str): The checkpoint file.
        map_location: As for :func:`torch.load`. Defaults to ``'cpu'``.
        allowed (Sequence, optional): The classes and functions the file may use beyond
            tensors and plain containers, or ``(object, 'module.name')`` pairs. Defaults to
            what mmengine training checkpoints hold (:func:`allowed_globals`).
        native (bool, optional): Load with ``torch.load(weights_only=True)`` and torch's
            allow-list (True) or with the restricted unpickler (False). Defaults to the
            first where torch has it (:data:`NATIVE_ALLOW_LIST`).

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        CheckpointError: If the file is truncated or corrupt, or would run code (or build an
            object that is not allow-listed) when unpickled; the message says which.
        RuntimeError: If the installed torch is older than mmhire supports.
    """
    check_torch()
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    native = NATIVE_ALLOW_LIST if native is None else native
    what = ('the types of mmengine training checkpoints' if allowed is None else
            ', '.join(_named(allowed)) or 'nothing else')
    try:
        allowed = allowed_globals() if allowed is None else list(allowed)
        return _torch_load(path, map_location, allowed, native)
    except _UNREADABLE as err:
        unsafe = _unsafe_reason(err)
        if unsafe is not None:
            raise CheckpointError(
                f'refused to load checkpoint {path!r}: unpickling it would {unsafe}, and only '
                f'tensors, plain containers and {what} are allowed (weights-only loading). If '
                f'you trust the file, turn it into a plain state dict in a separate, trusted '
                f'process') from err
        detail = str(err).strip().splitlines()[0].split('. ')[0] if str(err).strip() else ''
        raise CheckpointError(
            f'checkpoint {path!r} ({osp.getsize(path)} bytes) is truncated or corrupt and '
            f'cannot be read ({type(err).__name__}: {detail}); use an earlier checkpoint or '
            f'download/copy it again') from err


# How a refused weights-only load shows in torch's message, and what it tried to do.
_REFUSALS = (
    (r'GLOBAL (\S+)', 'use {}'),
    (r'refused ((?:getattr|_codecs\.encode)\([^)]*\))', 'call {}'),
    (r'create new object for .* but got (.*)', 'build {}'),
    (r'WeightsUnpickler error:\s*(\S[^\n]*)',
     'need pickle features weights-only loading does not allow ({})'),
)


def _unsafe_reason(err: Exception) -> Optional[str]:
    """What a refused weights-only load tried to do, or None if ``err`` is not a refusal."""
    if not isinstance(err, pickle.UnpicklingError):
        return None
    for pattern, reason in _REFUSALS:
        found = re.search(pattern, str(err))
        if found:
            return reason.format(found.group(1).strip())
    return None


def shape_mismatches(model: torch.nn.Module, state_dict: Dict[str, Any],
                     limit: int = 5) -> Tuple[List[str], int]:
    """Describes up to ``limit`` tensors of ``state_dict`` (a leading ``module.`` ignored)
    whose shapes differ from the model's, and returns them with the total count."""
    own = model.state_dict()
    bad = []
    for key, value in strip_module_prefix(state_dict).items():
        if key in own and hasattr(value, 'shape') and tuple(value.shape) != tuple(
                own[key].shape):
            bad.append(f'{key}: checkpoint {tuple(value.shape)}, model {tuple(own[key].shape)}')
    return bad[:limit], len(bad)


def checkpoint_misfit(model: torch.nn.Module, state_dict: Dict[str, Any],
                      unexpected: bool = False, limit: int = 5) -> str:
    """How ``state_dict`` (a leading ``module.`` ignored) does not fit ``model``: tensors of
    other shapes and the model's tensors it lacks, with ``unexpected`` also tensors the model
    does not have, each with the first ``limit`` names; an empty string where it fits."""
    bad, count = shape_mismatches(model, state_dict, limit)
    loaded = strip_module_prefix(state_dict)
    own = model.state_dict()
    missing = [k for k in own if k not in loaded]
    extra = [k for k in loaded if k not in own] if unexpected else []
    problems = []
    if count:
        problems.append(f'{count} tensor(s) have other shapes, first {"; ".join(bad)}')
    if missing:
        problems.append(f'{len(missing)} of the model\'s tensors are missing, first '
                        f'{", ".join(missing[:limit])}')
    if extra:
        problems.append(f'{len(extra)} tensor(s) the model does not have, first '
                        f'{", ".join(extra[:limit])}')
    return '; '.join(problems)


def strip_module_prefix(state_dict: Dict[str, Any]) -> Dict[str, Any]:
    """``state_dict`` without the ``module.`` that (Distributed)DataParallel saves add."""
    return {k[len('module.'):] if k.startswith('module.') else k: v
            for k, v in state_dict.items()}


def state_dict_of(checkpoint: Dict[str, Any]) -> Dict[str, Any]:
    """The weights of a loaded checkpoint: its ``state_dict`` entry if it has one (mmengine's
    files), else the file itself (a bare state dict), ``module.`` prefixes stripped."""
    return strip_module_prefix(checkpoint.get('state_dict', checkpoint))


def _under_prefix(state_dict: Dict[str, Any], prefix: str) -> Dict[str, Any]:
    """The entries whose keys start with ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_pretrained(module: torch.nn.Module, cfg: Dict[str, Any]) -> None:
    """Loads ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` into
    ``module``, strictly: a checkpoint with tensors of other shapes, or with none of the
    module's keys, is refused with the keys that do not fit, and nothing is half-loaded.
    Without a prefix, a whole classifier's ``backbone.`` part is taken when nothing else
    fits."""
    from mmengine.runner.checkpoint import _load_checkpoint, load_state_dict
    name = type(module).__name__
    path, prefix = cfg.get('checkpoint'), cfg.get('prefix')
    if not path:
        raise ValueError(f'{name}: init_cfg of type Pretrained needs checkpoint=<file or URL>')
    state_dict = state_dict_of(
        _load_checkpoint(path, map_location=cfg.get('map_location', 'cpu')))
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        with_prefix = _under_prefix(state_dict, prefix)
        if not with_prefix:
            raise CheckpointError(
                f'{name}: no key of Pretrained checkpoint {path!r} starts with '
                f'prefix={prefix!r} (it has e.g. {sorted(state_dict)[:3]}); set prefix to '
                f'the backbone\'s name in that checkpoint, or None for a bare backbone')
        state_dict = with_prefix
    own = module.state_dict()
    if not prefix and not own.keys() & state_dict.keys():
        # A whole classifier given without a prefix (the deprecated `pretrained`
        # argument): its backbone is the part that can fit.
        state_dict = _under_prefix(state_dict, 'backbone.') or state_dict
    if not own.keys() & state_dict.keys():
        raise CheckpointError(
            f'{name}: Pretrained checkpoint {path!r} (prefix={prefix!r}) holds none of '
            f'the backbone\'s keys (it has e.g. {sorted(state_dict)[:3]}). A released '
            f'Hire-MLP file must first be converted: `python -m mmhire weights <size> --file '
            f'FILE` (or `python -m mmhire convert SRC DST`); a converted classifier needs '
            f"prefix='backbone.'")
    bad, count = shape_mismatches(module, state_dict)
    if count:
        arch = getattr(module, 'arch_settings', None)
        what = f'arch {arch["channels"]}/{arch["depths"]}' if arch else 'the model'
        raise CheckpointError(
            f'{name}: Pretrained checkpoint {path!r} does not fit {what}: {count} tensor(s) '
            f'have other shapes, first {"; ".join(bad)}. Use the checkpoint converted for '
            f'this arch')
    load_state_dict(module, state_dict, strict=False, logger='current')


def save_checkpoint_atomic(obj: Any, path: str) -> None:
    """:func:`torch.save` that never leaves a partial file under ``path``."""
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def load_from_local_weights_only(filename: str, map_location: Optional[Any] = None) -> Any:
    """mmengine's loader for local files (mmengine logs the name past ``load_from_``)."""
    return safe_load(filename, map_location=map_location)


def install_safe_loader() -> None:
    """Makes mmengine load local checkpoint files (``load_from``, ``--resume``,
    ``Pretrained`` init) with :func:`safe_load`."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_weights_only, force=True)

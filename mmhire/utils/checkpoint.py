"""Safe, crash-proof checkpoint files.

Every checkpoint mmhire reads goes through :func:`safe_load`: ``torch.load`` with
``weights_only=True``, which builds tensors and plain containers and refuses any other
object, so a crafted file cannot run code while it is unpickled. mmengine's own training
checkpoints hold a few more types (its message hub's ``HistoryBuffer`` objects and the numpy
arrays inside them); exactly those are allow-listed, nothing else. Importing mmhire makes
mmengine's loader for local files (used by ``--resume``, ``load_from`` and ``Pretrained``
init) this one.

Every checkpoint mmhire writes goes to a file beside its target first and is renamed into
place once complete, so a killed process never leaves a half-written file under a
checkpoint's name.
"""
import os
import os.path as osp
import pickle
import re
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch

PARTIAL_SUFFIX = '.partial'
_BUILTIN_STATISTICS = frozenset({'min', 'max', 'current', 'mean'})


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


def _numpy_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """numpy's array and scalar reconstructors, under the module names numpy 1 and 2
    pickle them with."""
    multiarray = np.core.multiarray if hasattr(np, 'core') else np._core.multiarray
    found: List[Union[Callable, Tuple[Callable, str]]] = [np.ndarray, np.dtype]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        found.append((multiarray._reconstruct, f'{module}._reconstruct'))
        found.append((multiarray.scalar, f'{module}.scalar'))
    found.extend(type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDGUSV')
    return found


def allowed_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """The non-tensor types an mmengine training checkpoint holds: the message hub's
    ``HistoryBuffer``, numpy arrays, dtypes and scalars, and ``getattr`` restricted to
    ``HistoryBuffer``'s statistics methods."""
    from mmengine.logging import HistoryBuffer
    return [HistoryBuffer, (_history_buffer_statistic, 'builtins.getattr'),
            (_history_buffer_statistic, '__builtin__.getattr')] + _numpy_globals()


@contextmanager
def _allow_listed() -> Iterator[None]:
    with torch.serialization.safe_globals(allowed_globals()):
        yield


def safe_load(path: str, map_location: Any = 'cpu') -> Any:
    """Loads a checkpoint file with ``weights_only=True`` and the allow-list above.

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        CheckpointError: If the file is truncated or corrupt, or would run code (or build an
            object that is not allow-listed) when unpickled; the message says which.
    """
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    try:
        with _allow_listed():
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for unreadable files
        unsafe = _unsafe_reason(err)
        if unsafe is not None:
            raise CheckpointError(
                f'refused to load checkpoint {path!r}: unpickling it would {unsafe}, and only '
                f'tensors, plain containers and the types of mmengine training checkpoints are '
                f'allowed (weights_only=True). If you trust the file, turn it into a plain '
                f'state dict in a separate, trusted process') from err
        detail = str(err).strip().splitlines()[0].split('. ')[0] if str(err).strip() else ''
        raise CheckpointError(
            f'checkpoint {path!r} ({osp.getsize(path)} bytes) is truncated or corrupt and '
            f'cannot be read ({type(err).__name__}: {detail}); use an earlier checkpoint or '
            f'download/copy it again') from err


# How a refused weights-only load shows in torch's message, and what it tried to do.
_REFUSALS = (
    (r'GLOBAL (\S+)', 'use {}'),
    (r'refused (getattr\([^)]*\))', 'call {}'),
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
    for key, value in state_dict.items():
        key = key[len('module.'):] if key.startswith('module.') else key
        if key in own and hasattr(value, 'shape') and tuple(value.shape) != tuple(
                own[key].shape):
            bad.append(f'{key}: checkpoint {tuple(value.shape)}, model {tuple(own[key].shape)}')
    return bad[:limit], len(bad)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(partial: str, path: str) -> None:
    """Flushes the complete file ``partial`` to disk and renames it to ``path`` in one step."""
    with open(partial, 'rb') as f:
        os.fsync(f.fileno())
    os.replace(partial, path)
    _fsync_dir(osp.dirname(osp.abspath(path)))


def partial_name(path: str) -> str:
    """The file a checkpoint is written to before it is renamed to ``path``."""
    return path + PARTIAL_SUFFIX


def write_atomic(path: str, write: Callable[[str], None]) -> None:
    """Calls ``write(tmp)`` on a file beside ``path`` and renames it into place; on any
    failure the partial file is removed and ``path`` keeps what it held before."""
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = osp.join(directory, f'.{osp.basename(path)}.{os.getpid()}{PARTIAL_SUFFIX}')
    try:
        write(tmp)
        publish(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def save_checkpoint_atomic(obj: Any, path: str) -> None:
    """:func:`torch.save` that never leaves a partial file under ``path``."""
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def write_text_atomic(path: str, text: str) -> None:
    """Writes a small text file so that readers see either the old or the new content."""

    def _write(tmp: str) -> None:
        with open(tmp, 'w') as f:
            f.write(text)

    write_atomic(path, _write)


def _load_local(filename: str, map_location: Optional[Any] = None) -> Any:
    return safe_load(filename, map_location=map_location)


def install_safe_loader() -> None:
    """Makes mmengine load local checkpoint files (``load_from``, ``--resume``,
    ``Pretrained`` init) with :func:`safe_load`."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=_load_local, force=True)

"""Files that appear whole or not at all.

Everything mmhire writes for a user (checkpoints, ONNX files, a deployment's work dir, logs,
demo annotations) is written beside its target first, flushed to disk and renamed into place
once complete, so a killed process or a failed step never leaves a half-written file under
the target's name, and an existing target keeps what it held before.
"""
import os
import os.path as osp
from typing import Callable

#: The suffix of a file being written, before it is renamed to its target.
PARTIAL_SUFFIX = '.partial'


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
    """Flushes the complete file ``partial`` to disk and renames it to ``path`` in one step
    (both on one file system)."""
    with open(partial, 'rb') as f:
        os.fsync(f.fileno())
    os.replace(partial, path)
    _fsync_dir(osp.dirname(osp.abspath(path)))


def partial_name(path: str) -> str:
    """The file a checkpoint is written to before it is renamed to ``path``."""
    return path + PARTIAL_SUFFIX


def write_atomic(path: str, write: Callable[[str], None]) -> None:
    """Calls ``write(tmp)`` on a file beside ``path`` and publishes it as ``path``; on any
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


def write_text_atomic(path: str, text: str) -> None:
    """Writes a text file so that readers see either the old or the new content."""

    def _write(tmp: str) -> None:
        with open(tmp, 'w') as f:
            f.write(text)

    write_atomic(path, _write)

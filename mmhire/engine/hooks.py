"""Hooks that keep training checkpoints loadable with ``torch.load(weights_only=True)``."""
from typing import Any

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.registry import HOOKS

_BUFFER_TAG = '__mmhire_history_buffer__'


def _to_plain(value: Any) -> Any:
    """numpy and HistoryBuffer objects -> tensors, Python numbers and tagged dicts."""
    if isinstance(value, HistoryBuffer):
        logs, counts = value.data
        return {_BUFFER_TAG: True, 'max_length': int(value.max_length),
                'log_history': torch.from_numpy(np.asarray(logs, dtype=np.float64).copy()),
                'count_history': torch.from_numpy(np.asarray(counts, dtype=np.int64).copy())}
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy()) if value.dtype != object else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return type(value)((k, _to_plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)) and not hasattr(value, '_fields'):
        return type(value)(_to_plain(v) for v in value)
    return value


def _from_plain(value: Any) -> Any:
    """Undoes :func:`_to_plain` for the history buffers."""
    if isinstance(value, dict):
        if value.get(_BUFFER_TAG):
            return HistoryBuffer(value['log_history'].numpy().tolist(),
                                 value['count_history'].numpy().tolist(),
                                 max_length=value['max_length'])
        return type(value)((k, _from_plain(v)) for k, v in value.items())
    return value


@HOOKS.register_module()
class WeightsOnlyCheckpointHook(Hook):
    """Writes the runner's extra state (the message hub's history buffers and any numpy value)
    as tensors and plain containers, and restores it on load.

    mmengine pickles ``HistoryBuffer`` objects, numpy arrays and, through them, the builtin
    ``getattr`` into every checkpoint; ``torch.load(weights_only=True)`` rightly refuses the
    last. With this hook the whole checkpoint is made of types that weights-only loading
    accepts, so ``--resume`` needs no allow-listed callable at all.
    """

    priority = 'VERY_LOW'  # after every hook that adds to the checkpoint

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in ('meta', 'message_hub'):
            if key in checkpoint:
                checkpoint[key] = _to_plain(checkpoint[key])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if 'message_hub' in checkpoint:
            checkpoint['message_hub'] = _from_plain(checkpoint['message_hub'])

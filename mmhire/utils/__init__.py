from .checkpoint import CheckpointError, install_safe_loader, safe_load, save_checkpoint_atomic
from .complexity import model_complexity
from .fileio import write_atomic, write_text_atomic

__all__ = [
    'CheckpointError', 'install_safe_loader', 'model_complexity', 'safe_load',
    'save_checkpoint_atomic', 'write_atomic', 'write_text_atomic'
]

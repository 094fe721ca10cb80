from .ckpt_convert import (
                           convert_hire_mlp,
                           extract_state_dict,
                           load_checkpoint_file,
                           save_checkpoint_atomic,
)

__all__ = [
    'convert_hire_mlp', 'extract_state_dict', 'load_checkpoint_file', 'save_checkpoint_atomic'
]

from .ckpt_convert import convert_hire_mlp, extract_state_dict

__all__ = ['convert_hire_mlp', 'extract_state_dict']

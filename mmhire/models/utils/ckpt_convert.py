"""Conversion of the released Hire-MLP ImageNet checkpoints to mmhire's key layout."""
import re
from collections import OrderedDict
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch

from mmhire.utils.checkpoint import strip_module_prefix

# (pattern on a released key, function of the match giving the mmpretrain key).
# Released layout: network.{0,2,4,6} are the stages, network.{1,3,5} the downsampling layers.
_BLOCK_PARTS = {
    'norm1': 'norm1',
    'norm2': 'norm2',
    'attn.mlp_h1': 'token_mixer.height_mlp.fc1',
    'attn.mlp_h1_norm': 'token_mixer.height_mlp.norm',
    'attn.mlp_h2': 'token_mixer.height_mlp.fc2',
    'attn.mlp_w1': 'token_mixer.width_mlp.fc1',
    'attn.mlp_w1_norm': 'token_mixer.width_mlp.norm',
    'attn.mlp_w2': 'token_mixer.width_mlp.fc2',
    'attn.mlp_c': 'token_mixer.channel_fc',
    'attn.reweight.fc1': 'token_mixer.reweight.fc1',
    'attn.reweight.fc2': 'token_mixer.reweight.fc2',
    'attn.proj': 'token_mixer.proj',
    'mlp.fc1': 'mlp.fc1',
    'mlp.fc2': 'mlp.fc2',
}
_BLOCK_RE = re.compile(r'^network\.(\d+)\.(\d+)\.(' +
                       '|'.join(re.escape(k) for k in _BLOCK_PARTS) + r')\.(\w+)$')
_DOWN_RE = re.compile(r'^network\.(\d+)\.(proj|norm)\.(\w+)$')
_STEM_RE = re.compile(r'^patch_embed\.(proj|norm)\.(\w+)$')
_NORM_RE = re.compile(r'^norm\.(\w+)$')
_HEAD_RE = re.compile(r'^head\.(weight|bias)$')
_CONV_MODULE = {'proj': 'conv', 'norm': 'bn'}


def _num_stages(keys) -> int:
    indices = [int(m.group(1)) for m in map(_BLOCK_RE.match, keys) if m]
    if not indices:
        raise KeyError('no Hire-MLP block keys (network.<i>.<j>.attn...) found: this does not '
                       'look like a released Hire-MLP checkpoint')
    return max(indices) // 2 + 1


def convert_hire_mlp(state_dict: Mapping[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Maps a released Hire-MLP state dict onto an mmpretrain ``ImageClassifier`` built with
    ``HireMLP`` (``backbone.``), ``GlobalAveragePooling`` and ``LinearClsHead`` (``head.fc.``).

    Args:
        state_dict (Mapping[str, Tensor]): The released model's state dict. A leading
            ``module.`` (from a DistributedDataParallel save) is stripped.

    Returns:
        OrderedDict[str, Tensor]: The converted state dict, in the input order.

    Raises:
        KeyError: If any key has no counterpart, naming every such key.
    """
    keys = list(strip_module_prefix(state_dict))
    last = _num_stages(keys) - 1
    rules: List[Tuple[re.Pattern, Callable[[re.Match], Optional[str]]]] = [
        (_BLOCK_RE, lambda m: None if int(m.group(1)) % 2 else
         f'backbone.stages.{int(m.group(1)) // 2}.{m.group(2)}.'
         f'{_BLOCK_PARTS[m.group(3)]}.{m.group(4)}'),
        (_DOWN_RE, lambda m: None if int(m.group(1)) % 2 == 0 else
         f'backbone.downsample_layers.{int(m.group(1)) // 2 + 1}.'
         f'{_CONV_MODULE[m.group(2)]}.{m.group(3)}'),
        (_STEM_RE, lambda m: f'backbone.downsample_layers.0.{_CONV_MODULE[m.group(1)]}.'
         f'{m.group(2)}'),
        (_NORM_RE, lambda m: f'backbone.norm{last}.{m.group(1)}'),
        (_HEAD_RE, lambda m: f'head.fc.{m.group(1)}'),
    ]
    converted: OrderedDict[str, torch.Tensor] = OrderedDict()
    unmapped = []
    for key, value in zip(keys, state_dict.values()):
        new_key = None
        for pattern, rename in rules:
            match = pattern.match(key)
            if match:
                new_key = rename(match)
                break
        if new_key is None:
            unmapped.append(key)
        else:
            converted[new_key] = value
    if unmapped:
        raise KeyError(f'{len(unmapped)} key(s) of the checkpoint have no counterpart in '
                       f'mmhire: {unmapped[:10]}{" ..." if len(unmapped) > 10 else ""}')
    return converted


def extract_state_dict(checkpoint: Mapping, use_ema: bool = False) -> Dict[str, torch.Tensor]:
    """Picks the weights out of a released checkpoint.

    Args:
        checkpoint (Mapping): The loaded file: a dict holding ``model`` and maybe
            ``model_ema``, or a bare state dict.
        use_ema (bool): Take ``model_ema`` instead of ``model``. Defaults to False.

    Returns:
        dict[str, Tensor]: The chosen state dict.
    """
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'expected a checkpoint dict, got {type(checkpoint).__name__}')
    wanted = 'model_ema' if use_ema else 'model'
    if checkpoint.get(wanted) is not None:
        state_dict = checkpoint[wanted]
    elif use_ema:
        held = ('its model_ema is empty (the run trained without EMA)'
                if 'model_ema' in checkpoint else
                f'its keys are {sorted(checkpoint)[:10]}')
        raise KeyError(f'the checkpoint has no model_ema weights: {held}; drop --use-ema')
    elif checkpoint.get('model_ema') is not None:
        state_dict = checkpoint['model_ema']
    elif 'state_dict' in checkpoint:
        state_dict = checkpoint['state_dict']
    else:
        state_dict = checkpoint
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise TypeError(f'expected a state dict of tensors, but {bad[:5]} are not tensors')
    return dict(state_dict)

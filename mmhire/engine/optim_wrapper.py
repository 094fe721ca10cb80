"""Mixed precision on the CPU: what ``--amp`` gives on a machine without a GPU."""
from contextlib import ExitStack, contextmanager
from typing import Iterator, List

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


def _to_float32(value):
    """``value`` with its bfloat16 tensors (in tuples, lists and dicts too) as float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype == torch.bfloat16 else value
    if isinstance(value, (tuple, list)):
        return type(value)(_to_float32(v) for v in value)
    if isinstance(value, dict):
        return type(value)((k, _to_float32(v)) for k, v in value.items())
    return value


def feature_extractor(model: nn.Module) -> List[nn.Module]:
    """The modules of an OpenMMLab model that compute its features: its ``backbone`` and
    ``neck`` (either may be absent), inside a (distributed) wrapper too."""
    model = getattr(model, 'module', model)
    return [m for m in (getattr(model, 'backbone', None), getattr(model, 'neck', None))
            if isinstance(m, nn.Module)]


@contextmanager
def _bf16_forwards(modules: List[nn.Module]) -> Iterator[None]:
    """Runs each module's forward under bfloat16 autocast, its outputs returned as float32;
    the modules, their hooks and their callers are otherwise unchanged."""

    def wrap(forward):
        def bf16_forward(*args, **kwargs):
            with torch.autocast('cpu', dtype=torch.bfloat16):
                return _to_float32(forward(*args, **kwargs))
        return bf16_forward

    with ExitStack() as restore:
        for module in modules:
            own = module.__dict__.get('forward')
            module.forward = wrap(module.forward)
            restore.callback(_restore_forward, module, own)
        yield


def _restore_forward(module: nn.Module, own) -> None:
    if own is None:
        del module.forward
    else:
        module.forward = own


@OPTIM_WRAPPERS.register_module()
class CPUBF16OptimWrapper(OptimWrapper):
    """An :class:`OptimWrapper` whose forward passes run their feature extractor (backbone
    and neck) under ``torch.autocast('cpu', dtype=torch.bfloat16)``, where nearly all of a
    detector's or segmentor's compute is. The heads get float32 features and run in float32:
    mmcv's CPU ops that they call (NMS, RoIAlign) take float32 only. A model without a
    ``backbone`` runs its whole forward under autocast. bfloat16 has float32's exponent
    range, so the loss needs no scaling, and parameters and optimizer state stay float32.

    mmengine's ``AmpOptimWrapper`` refuses to run without an accelerator; this wrapper takes
    its place on the CPU. It accepts the same arguments as :class:`OptimWrapper`.
    """

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model):
            parts = feature_extractor(model)
            if parts:
                with _bf16_forwards(parts):
                    yield
            else:
                with torch.autocast('cpu', dtype=torch.bfloat16):
                    yield

"""Mixed precision on the CPU: what ``--amp`` gives on a machine without a GPU."""
from contextlib import contextmanager

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUBF16OptimWrapper(OptimWrapper):
    """An :class:`OptimWrapper` whose forward passes run under ``torch.autocast('cpu',
    dtype=torch.bfloat16)``. bfloat16 has float32's exponent range, so the loss needs no
    scaling, and parameters and optimizer state stay float32.

    mmengine's ``AmpOptimWrapper`` refuses to run without an accelerator; this wrapper takes
    its place on the CPU. It accepts the same arguments as :class:`OptimWrapper`.
    """

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), torch.autocast('cpu', dtype=torch.bfloat16):
            yield

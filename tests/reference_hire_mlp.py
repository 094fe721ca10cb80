"""Test helpers around the straightforward formulation of Hire-MLP."""
import torch

from mmhire.models.hire_mlp_reference import (  # noqa: F401
    ARCHS,
    REGION_SIZES,
    STEP_DILATIONS,
    STEP_STRIDES,
    ReferenceHireMLPNet,
)


def regions_to_channels_by_definition(x, dim, p):
    """SPEC's rearrangement spelled out one region position at a time: row k of every region
    goes to channel c*p + k. Checks the reshape/permute form the reference uses."""
    n = x.size(dim)
    parts = [x.index_select(dim, torch.arange(k, n, p)) for k in range(p)]
    return torch.stack(parts, dim=2).flatten(1, 2)


def randomize_(model, seed=0):
    """Gives every parameter and BN buffer random, unit-scale values (deterministic)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith('running_var'):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith(('weight', 'bias', 'running_mean')) and tensor.dim() <= 1:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.2 +
                             (1.0 if name.endswith('weight') else 0.0))
            else:
                fan_in = tensor[0].numel() if tensor.dim() > 1 else 1
                tensor.copy_(torch.randn(tensor.shape, generator=gen) / fan_in**0.5)
    return model


def randomize_bn_(model, gen):
    """BatchNorm statistics and affine parameters away from the 0/1 defaults."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1, generator=gen)
                module.running_var.uniform_(0.5, 1.5, generator=gen)
                module.weight.uniform_(0.5, 1.5, generator=gen)
                module.bias.uniform_(-0.1, 0.1, generator=gen)
    return model

"""Test helpers around the straightforward formulation of Hire-MLP."""
import argparse
import copy

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


def deit_style_checkpoint(model, ema_state):
    """What the release's DeiT-style train.py saves: the weights, the EMA weights, the
    optimizer, the timm cosine scheduler's and the loss scaler's state dicts, the epoch and
    the command line as an argparse.Namespace."""
    trained = copy.deepcopy(model).train()  # gives the optimizer a state; `model` is saved
    optimizer = torch.optim.AdamW(trained.parameters(), lr=5e-4, weight_decay=0.05)
    trained(torch.rand(2, 3, 64, 64)).sum().backward()
    optimizer.step()
    args = argparse.Namespace(
        model='hire_mlp_tiny', batch_size=256, epochs=300, lr=5e-4, min_lr=1e-5,
        warmup_lr=1e-6, warmup_epochs=20, cooldown_epochs=10, opt='adamw', opt_eps=1e-8,
        weight_decay=0.05, sched='cosine', drop_path=0.0, mixup=0.8, cutmix=1.0,
        cutmix_minmax=None, smoothing=0.1, aa='rand-m9-mstd0.5-inc1', reprob=0.25,
        model_ema=True, model_ema_decay=0.99996, data_path='/data/imagenet', device='cuda',
        seed=0, dist_url='env://', input_size=224, repeated_aug=True)
    lr_scheduler = dict(t_initial=300, lr_min=1e-5, cycle_mul=1.0, warmup_t=20,
                        warmup_lr_init=1e-6, warmup_prefix=False, t_in_epochs=True,
                        noise_range_t=None, noise_pct=0.67, noise_seed=42,
                        base_values=[5e-4, 5e-4], warmup_steps=[2.5e-5, 2.5e-5],
                        param_group_field='lr', metric=None)
    scaler = dict(scale=65536.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000,
                  _growth_tracker=0)
    return dict(model=model.state_dict(), model_ema=ema_state,
                optimizer=optimizer.state_dict(), lr_scheduler=lr_scheduler, epoch=299,
                scaler=scaler, args=args)

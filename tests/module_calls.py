"""Which modules of a model a code path calls, seen through forward hooks."""
import torch.nn as nn


def count_calls(model, path):
    """Runs ``path(model)`` with a forward hook on every submodule that has a forward (not
    the ModuleList containers); returns the modules that never ran, and how many ran."""
    modules = {name: module for name, module in model.named_modules()
               if name and not isinstance(module, nn.ModuleList)}
    calls = dict.fromkeys(modules, 0)
    handles = [module.register_forward_hook(
        lambda m, i, o, name=name: calls.__setitem__(name, calls[name] + 1))
        for name, module in modules.items()]
    try:
        path(model)
    finally:
        for handle in handles:
            handle.remove()
    return [name for name, n in calls.items() if n == 0], sum(n > 0 for n in calls.values())

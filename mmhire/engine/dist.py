"""Process-group set-up for launches of several processes.

A launch (``--launcher pytorch`` or ``slurm``) is a GPU launch unless ``MMHIRE_DEVICE=cpu``
says otherwise, and a GPU launch that finds no GPU stops with an error. mmengine's launchers
call ``torch.cuda.set_device`` (and, for SLURM, divide by the number of GPUs), which fails
without GPUs; on a CPU launch mmhire joins the process group itself with the gloo backend,
from the same environment variables, before the Runner looks, and the Runner then uses it.
With GPUs, mmengine's own launchers run unchanged (NCCL).
"""
import os
import subprocess

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


def _slurm_env() -> None:
    """Fills the torch.distributed variables from SLURM's, as mmengine does for GPUs."""
    nodelist = os.environ['SLURM_NODELIST']
    addr = subprocess.run(['scontrol', 'show', 'hostnames', nodelist], capture_output=True,
                          text=True, check=True).stdout.split()[0]
    os.environ.setdefault('MASTER_ADDR', addr)
    os.environ.setdefault('MASTER_PORT', '29500')
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')


class LaunchError(RuntimeError):
    """A multi-process launch whose devices are not what it asked for."""


#: Set to ``cpu`` to launch several processes on CPUs on purpose (``cuda`` by default).
DEVICE_VARIABLE = 'MMHIRE_DEVICE'


def _no_gpu_message(launcher: str) -> str:
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')
    found = (f'torch {torch.__version__} is a CPU-only build' if torch.version.cuda is None
             else f'torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU '
             f'(CUDA_VISIBLE_DEVICES={visible!r})')
    return (f'--launcher {launcher} is a GPU launch, but {found}. Check that the job got '
            f'its GPUs (tools/slurm_train.sh requests GPUS_PER_NODE per node). To run the '
            f'processes on CPUs on purpose, set {DEVICE_VARIABLE}=cpu (e.g. '
            f'{DEVICE_VARIABLE}=cpu tools/dist_train.sh CONFIG 2)')


def init_cpu_process_group(launcher: str) -> bool:
    """Joins a gloo process group for ``launcher`` on a CPU launch (``MMHIRE_DEVICE=cpu``).

    A launch without that variable is a GPU launch: one that finds no GPU raises
    :class:`LaunchError` instead of training on the CPU unnoticed.

    Returns:
        bool: Whether this function initialised the group (False for GPU launches, for
        ``launcher='none'``, or when a group already exists).
    """
    if launcher == 'none' or dist.is_initialized():
        return False
    device = os.environ.get(DEVICE_VARIABLE, 'cuda')
    if device not in ('cuda', 'cpu'):
        raise LaunchError(f'{DEVICE_VARIABLE}={device!r}: choose cuda (the default) or cpu')
    if device == 'cuda':
        if not torch.cuda.is_available():
            raise LaunchError(_no_gpu_message(launcher))
        return False
    if torch.cuda.is_available():
        raise LaunchError(f'{DEVICE_VARIABLE}=cpu asks for a CPU launch, but this process '
                          f'sees GPUs; hide them with CUDA_VISIBLE_DEVICES= or unset '
                          f'{DEVICE_VARIABLE}')
    if launcher == 'slurm':
        _slurm_env()
    elif launcher != 'pytorch':
        raise ValueError(f'launcher {launcher!r} is not supported without GPUs; use pytorch '
                         f'(torchrun) or slurm')
    missing = [k for k in ('MASTER_ADDR', 'MASTER_PORT', 'RANK', 'WORLD_SIZE')
               if k not in os.environ]
    if missing:
        raise RuntimeError(f'--launcher {launcher} needs the environment variables {missing}; '
                           f'start the job with tools/dist_train.sh (torchrun) or '
                           f'tools/slurm_train.sh (srun)')
    dist.init_process_group(backend='gloo', init_method='env://')
    return True



@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper for CPU processes: mmengine passes ``device_ids`` (the local
    rank, a GPU index), which DistributedDataParallel refuses for a module on the CPU."""

    def __init__(self, module, device_ids=None, **kwargs):
        super().__init__(module=module, device_ids=None, **kwargs)

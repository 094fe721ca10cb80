"""Process-group set-up for machines without GPUs.

mmengine's launchers call ``torch.cuda.set_device`` (and, for SLURM, divide by the number of
GPUs), which fails on a CPU-only machine. There, mmhire joins the process group itself with the
gloo backend, from the same environment variables, before the Runner looks; the Runner then
finds it initialised and uses it. With GPUs, mmengine's own launchers run unchanged (NCCL).
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


def init_cpu_process_group(launcher: str) -> bool:
    """Joins a gloo process group for ``launcher`` when no GPU is visible.

    Returns:
        bool: Whether this function initialised the group (False with GPUs, for
        ``launcher='none'``, or when a group already exists).
    """
    if launcher == 'none' or torch.cuda.is_available() or dist.is_initialized():
        return False
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

"""What tools/train.py and tools/test.py do, for mmpretrain, mmdet and mmseg configs alike.

The tools only parse arguments; preparing the config (work dir, resume, AMP, SyncBN in a
single process), checking that data and pretrained weights exist, and building the runner
live here.
"""
import importlib.util
import json
import os
import os.path as osp
import re
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional, Tuple

import torch
from mmengine.config import Config

from mmhire.utils.checkpoint import CheckpointError

from .dist import CPUDistributedDataParallel, LaunchError, init_cpu_process_group  # noqa: F401

DEMO_HINT = ('generate the built-in demo data with `python tools/misc/make_demo_data.py` and '
             'use a config from configs/demo/')
DATA_HINTS = {
    'coco': 'download COCO 2017 (train2017, val2017, annotations) into data/coco',
    'ade': 'download ADEChallengeData2016 into data/ade/ADEChallengeData2016',
    'imagenet': 'download ImageNet-1k (train/, val/ and meta/) into data/imagenet',
}


_RUNNER_COUNT = 0


class ConfigError(RuntimeError):
    """A config cannot run as it stands; the message says what to change."""


def _walk(node: Any) -> Iterator[dict]:
    """Yields every dict inside ``node`` (itself included), depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _walk(value)


def convert_sync_bn(cfg: Config) -> int:
    """Replaces ``SyncBN`` with ``BN`` in ``cfg.model``; returns how many were replaced.

    SyncBN needs a distributed process group on GPUs; a single process or a CPU run
    computes plain batch norm instead (the same thing for one process).
    """
    count = 0
    for node in _walk(cfg.get('model', {})):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            count += 1
    return count


def _datasets(loader_cfg: Optional[dict]) -> Iterator[dict]:
    if not loader_cfg:
        return
    stack = [loader_cfg.get('dataset')]
    while stack:
        dataset = stack.pop()
        if not isinstance(dataset, dict):
            continue
        if 'dataset' in dataset:  # RepeatDataset, ClassBalancedDataset, ...
            stack.append(dataset['dataset'])
        elif 'datasets' in dataset:  # ConcatDataset
            stack.extend(dataset['datasets'])
        else:
            yield dataset


def _hint_for(path: str) -> str:
    if 'demo' in path.split(os.sep) or 'demo' in path:
        return DEMO_HINT
    for key, hint in DATA_HINTS.items():
        if key in path.lower():
            return f'{hint}, or {DEMO_HINT}'
    return f'point the config at your data, or {DEMO_HINT}'


def dataset_paths(dataset: dict) -> List[Tuple[str, str]]:
    """The (description, path) pairs a dataset config needs on disk."""
    root = dataset.get('data_root') or ''
    paths = []
    if root:
        paths.append(('data_root', root))
    ann_file = dataset.get('ann_file')
    if ann_file:
        paths.append(('ann_file', osp.join(root, ann_file)))
    prefix = dataset.get('data_prefix')
    if isinstance(prefix, str):
        prefix = dict(img=prefix)
    for key, value in (prefix or {}).items():
        if isinstance(value, str) and value:
            paths.append((f'data_prefix.{key}', osp.join(root, value)))
    return paths


def check_data(cfg: Config, loaders: Tuple[str, ...]) -> None:
    """Stops with a clear error when a dataset folder or file of ``loaders`` is missing."""
    for loader in loaders:
        for dataset in _datasets(cfg.get(loader)):
            for what, path in dataset_paths(dataset):
                if path.startswith(('s3://', 'http://', 'https://')) or osp.exists(path):
                    continue
                raise ConfigError(
                    f'{loader}: the {dataset.get("type", "dataset")} {what} {path!r} does '
                    f'not exist (looked in {osp.abspath(path)}). To get it: '
                    f'{_hint_for(path)}.')


class DataError(RuntimeError):
    """A dataset file that exists but cannot be read."""


def _json_error(cfg: Config, err: json.JSONDecodeError) -> Optional[str]:
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        for dataset in _datasets(cfg.get(loader)):
            for what, path in dataset_paths(dataset):
                if what != 'ann_file' or not osp.isfile(path):
                    continue
                try:
                    with open(path, 'rb') as f:
                        json.load(f)
                except (json.JSONDecodeError, UnicodeDecodeError) as bad:
                    return (f'{loader}: annotation file {path!r} is not valid JSON ({bad}); it '
                            f'is truncated or damaged: download or generate it again')
    return None


@contextmanager
def explain_errors(cfg: Config) -> Iterator[None]:
    """Turns the errors a broken dataset causes deep inside mmengine, mmcv and pycocotools
    into a :class:`DataError` that names the file and what to do."""
    try:
        yield
    except json.JSONDecodeError as err:
        message = _json_error(cfg, err)
        if message is None:
            raise
        raise DataError(message) from err
    except AssertionError as err:
        found = re.search(r'failed to load image: (.+?)\s*$', str(err), re.MULTILINE)
        if found is None:
            raise
        raise DataError(f'image {found.group(1)!r} cannot be decoded (empty, truncated or not '
                        f'an image file): replace it, or remove it from the dataset') from err


def check_pretrained(cfg: Config) -> None:
    """Stops with a clear error when a ``Pretrained`` init names a local file that is missing."""
    for node in _walk(cfg.get('model', {})):
        if node.get('type') != 'Pretrained':
            continue
        checkpoint = node.get('checkpoint')
        if not isinstance(checkpoint, str) or '://' in checkpoint or osp.exists(checkpoint):
            continue
        raise ConfigError(
            f'the pretrained backbone checkpoint {checkpoint!r} does not exist. Get the '
            f'released ImageNet weights with `python -m mmhire weights <tiny|small|base> '
            f'--out {checkpoint}` (run from the folder you launch from), or train without them '
            f'with --cfg-options model.backbone.init_cfg=None')


def drop_pretrained_init(cfg: Config) -> None:
    """Removes ``Pretrained`` initialisations from ``cfg.model``: a trained checkpoint is
    loaded over the model anyway, so the ImageNet weights need not exist or be read."""
    for node in _walk(cfg.get('model', {})):
        if isinstance(node.get('init_cfg'), dict) and node['init_cfg'].get(
                'type') == 'Pretrained':
            node['init_cfg'] = None


def use_torchvision_roi_align(cfg: Config) -> int:
    """Has mmcv's ``RoIAlign`` layers in ``cfg.model`` (average pooling, the only kind
    torchvision has) run torchvision's kernel; returns how many it changed.

    On the CPU the two give the same outputs and gradients, bit for bit, and torchvision's
    forward and backward take a third to a fifth of mmcv's time (tests/test_engine). A layer
    whose config sets ``use_torchvision`` itself keeps that choice: ``use_torchvision=False``
    keeps mmcv's kernel.
    """
    if importlib.util.find_spec('torchvision') is None:
        return 0
    count = 0
    for node in _walk(cfg.get('model', {})):
        if node.get('type') == 'RoIAlign' and node.get('pool_mode', 'avg') == 'avg' and \
                'use_torchvision' not in node:
            node['use_torchvision'] = True
            count += 1
    return count


def _set_device_backend(cfg: Config, launcher: str) -> None:
    """SyncBN becomes BN in one process or on the CPU; the CPU runs use gloo, and
    torchvision's RoIAlign kernel."""
    on_cpu = not torch.cuda.is_available()
    if launcher == 'none' or on_cpu:
        convert_sync_bn(cfg)
    if on_cpu:
        use_torchvision_roi_align(cfg)
    if launcher != 'none' and on_cpu:
        cfg.env_cfg = cfg.get('env_cfg') or {}
        cfg.env_cfg.dist_cfg = dict(backend='gloo')
        wrapper = dict(cfg.get('model_wrapper_cfg') or {})
        wrapper['type'] = 'CPUDistributedDataParallel'
        wrapper.setdefault('broadcast_buffers', False)
        wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
        cfg.model_wrapper_cfg = wrapper


_AMP_WRAPPERS = ('AmpOptimWrapper', 'mmengine.AmpOptimWrapper')
# AmpOptimWrapper's own arguments, which an OptimWrapper does not take.
_AMP_ONLY_ARGS = ('loss_scale', 'dtype', 'use_fsdp')


def _set_precision(optim_wrapper: dict, amp: bool) -> None:
    """``--amp``: float16 with loss scaling where a GPU is, bfloat16 autocast on the CPU.

    A config that asks for ``AmpOptimWrapper`` itself (the Cascade Mask R-CNN 3x recipe) keeps
    it on GPUs. Without one, mmengine refuses to build it, so that run trains in float32 and
    says so; ``--amp`` asks for bfloat16 explicitly (:class:`CPUBF16OptimWrapper`: the backbone
    and neck in bfloat16, the heads in float32).
    """
    asked_by_config = optim_wrapper.get('type') in _AMP_WRAPPERS
    if torch.cuda.is_available():
        if amp and not asked_by_config:
            optim_wrapper['type'] = 'AmpOptimWrapper'
        if amp or asked_by_config:
            optim_wrapper.setdefault('loss_scale', 'dynamic')
        return
    if amp:
        # bfloat16 has float32's exponent range: no loss scaling needed.
        optim_wrapper['type'] = 'CPUBF16OptimWrapper'
    elif asked_by_config:
        from mmengine.logging import print_log
        print_log('the config trains in mixed precision (AmpOptimWrapper), which needs a GPU; '
                  'no GPU here, so this run trains in float32 (--amp: bfloat16 autocast)',
                  logger='current')
        optim_wrapper['type'] = 'OptimWrapper'
    else:
        return
    for key in _AMP_ONLY_ARGS:
        optim_wrapper.pop(key, None)


def _add_training_state_hook(cfg: Config) -> None:
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') == 'TrainingStateHook' for h in hooks):
        hooks.append(dict(type='TrainingStateHook'))
    cfg.custom_hooks = hooks


def _compile_backbone(cfg: Config) -> None:
    """Turns ``compile=True`` (or a dict of ``torch.compile`` options) into a
    :class:`~mmhire.engine.hooks.CompileBackboneHook`, for training and testing alike:
    mmengine itself compiles the whole ``train_step`` and nothing at test time."""
    options = cfg.get('compile')
    if options is None or options is False:
        return
    if options is True:
        options = {}
    if not isinstance(options, dict):
        raise ConfigError(f'compile={options!r}: give True or a dict of torch.compile options, '
                          f'e.g. --cfg-options compile=True or compile.mode=max-autotune')
    cfg.compile = None
    hooks = [h for h in cfg.get('custom_hooks') or [] if h.get('type') != 'CompileBackboneHook']
    cfg.custom_hooks = hooks + [dict(type='CompileBackboneHook', **options)]


def _use_safe_logger(cfg: Config) -> None:
    """The test metrics file written once, by the main process (see SafeLoggerHook)."""
    logger = (cfg.get('default_hooks') or {}).get('logger')
    if logger is not None and logger.get('type') in ('LoggerHook', 'mmengine.LoggerHook'):
        logger.type = 'SafeLoggerHook'
        logger.pop('_scope_', None)


def _use_safe_hooks(cfg: Config) -> None:
    """Atomic checkpoint writes and exact resumption (see :mod:`mmhire.engine.hooks`) for any
    config, including users' own configs written for plain mmengine."""
    default_hooks = cfg.get('default_hooks') or {}
    checkpoint = default_hooks.get('checkpoint')
    if checkpoint is not None and checkpoint.get('type') in ('CheckpointHook',
                                                             'mmengine.CheckpointHook'):
        checkpoint.type = 'AtomicCheckpointHook'
        checkpoint.pop('_scope_', None)
    _use_safe_logger(cfg)
    _add_training_state_hook(cfg)
    randomness = cfg.get('randomness') or {}
    loader = cfg.get('train_dataloader') or {}
    if randomness.get('deterministic'):
        # MKL picks kernels by memory alignment, so float sums can differ from run to run
        # in the last bit when several threads are used; STRICT pins them. Read by MKL at its
        # first call, which comes after this.
        os.environ.setdefault('MKL_CBWR', 'AUTO,STRICT')
    if randomness.get('deterministic') and loader.get('persistent_workers'):
        # Persistent workers carry their random state across epochs, which a resumed run
        # cannot recreate; fresh workers each epoch are seeded the same way every time.
        loader.persistent_workers = False


def prepare_train_config(cfg: Config, *, config_path: str, work_dir: Optional[str] = None,
                         resume: Optional[str] = None, amp: bool = False,
                         auto_scale_lr: bool = False, launcher: str = 'none',
                         partial_load: bool = False) -> Config:
    """Applies the train tool's options to ``cfg`` (in place) and returns it."""
    cfg.launcher = launcher
    if partial_load:
        cfg.partial_load = True
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])
    _set_device_backend(cfg, launcher)
    if amp or 'optim_wrapper' in cfg:
        _set_precision(cfg.optim_wrapper, amp)
    if auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise ConfigError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the '
                              'config (the total batch its learning rate was set for)')
        cfg.auto_scale_lr.enable = True
    if resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif resume is not None:
        if not osp.isfile(resume):
            raise ConfigError(f'--resume {resume!r}: no such checkpoint file')
        cfg.resume = True
        cfg.load_from = resume
    _use_safe_hooks(cfg)
    _compile_backbone(cfg)
    check_data(cfg, ('train_dataloader', 'val_dataloader'))
    if not cfg.get('resume') and not cfg.get('load_from'):
        check_pretrained(cfg)
    return cfg


def prepare_test_config(cfg: Config, *, config_path: str, checkpoint: str,
                        work_dir: Optional[str] = None, out: Optional[str] = None,
                        show_dir: Optional[str] = None, amp: bool = False,
                        launcher: str = 'none') -> Config:
    """Applies the test tool's options to ``cfg`` (in place) and returns it."""
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])
    if not osp.isfile(checkpoint):
        raise ConfigError(f'checkpoint {checkpoint!r} does not exist')
    cfg.load_from = checkpoint
    _add_training_state_hook(cfg)  # refuses a checkpoint that does not fit the model
    _use_safe_logger(cfg)
    _set_device_backend(cfg, launcher)
    drop_pretrained_init(cfg)
    _compile_backbone(cfg)
    if amp:
        cfg.test_cfg = cfg.get('test_cfg') or {}
        cfg.test_cfg.fp16 = True
    if out is not None:
        _add_dump_metric(cfg, out)
    if show_dir is not None:
        _enable_visualization(cfg, show_dir)
    check_data(cfg, ('test_dataloader', ))
    return cfg


def _add_dump_metric(cfg: Config, out: str) -> None:
    if not out.endswith(('.pkl', '.pickle')):
        raise ConfigError(f'--out {out!r}: the results file must end with .pkl or .pickle')
    # mmdet's own dump encodes masks compactly; the others use mmengine's generic one.
    dump_type = 'DumpDetResults' if cfg.get('default_scope') == 'mmdet' else 'DumpResults'
    dump = dict(type=dump_type, out_file_path=out)
    evaluator = cfg.test_evaluator
    if isinstance(evaluator, (list, tuple)):
        cfg.test_evaluator = list(evaluator) + [dump]
    elif 'metrics' in evaluator:
        evaluator.metrics = list(evaluator.metrics) + [dump]
    else:
        cfg.test_evaluator = [evaluator, dump]


def _enable_visualization(cfg: Config, show_dir: str) -> None:
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise ConfigError('--show-dir needs a visualization hook in default_hooks')
    show_dir = osp.abspath(show_dir)
    scope = cfg.get('default_scope')
    if scope == 'mmdet':
        hook.update(draw=True, test_out_dir=show_dir)
    elif scope == 'mmseg':
        hook.update(draw=True, interval=1)
        cfg.visualizer.save_dir = show_dir
    elif scope == 'mmpretrain':
        hook.update(enable=True, out_dir=show_dir, interval=1)
    else:
        raise ConfigError(f'--show-dir: no known visualization hook for scope {scope!r}')


def build_runner(cfg: Config):
    """Builds the runner in the config's scope (a custom ``runner_type`` if it names one)."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    init_cpu_process_group(cfg.get('launcher', 'none'))
    # mmengine keeps one logger and one visualizer per name; a unique name per runner keeps
    # the logs and pictures of several runners in one process (tests, the demo) apart.
    global _RUNNER_COUNT
    _RUNNER_COUNT += 1
    stem = osp.splitext(osp.basename(cfg.filename or 'config'))[0]
    name = cfg.get('experiment_name') or f'{stem}_{time.strftime("%Y%m%d_%H%M%S")}'
    cfg.experiment_name = f'{name}_{os.getpid()}_{_RUNNER_COUNT}'
    if isinstance(cfg.get('visualizer'), dict):
        cfg.visualizer.name = cfg.experiment_name
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def run_loop(cfg: Config, loop: str) -> int:
    """Builds the runner and runs its ``'train'`` or ``'test'`` loop, as tools/train.py and
    tools/test.py do. Returns the exit status: 0 when the loop ends, 2 for a launch this
    machine cannot run, 1 for a checkpoint or a data set that cannot be read; each error is
    printed as one line that names the problem and the fix."""
    try:
        with explain_errors(cfg):
            getattr(build_runner(cfg), loop)()
    except LaunchError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    except (CheckpointError, DataError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    return 0

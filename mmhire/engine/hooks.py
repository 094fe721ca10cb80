"""Hooks that make training checkpoints crash-proof and resumption exact."""
import glob
import json
import logging
import os
import os.path as osp
import random
from typing import Any, Dict, Iterator, Optional

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook, Hook, LoggerHook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

from mmhire.utils.checkpoint import CheckpointError, checkpoint_misfit
from mmhire.utils.compat import compile_kwargs
from mmhire.utils.fileio import PARTIAL_SUFFIX, partial_name, publish, write_text_atomic


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """:class:`mmengine.hooks.CheckpointHook` whose checkpoints survive a kill at any moment.

    Each checkpoint is written to ``<name>.partial``, flushed to disk and renamed to its
    name only when complete; ``last_checkpoint`` is replaced the same way afterwards, and
    checkpoints beyond ``max_keep_ckpts`` are deleted only after that. So ``last_checkpoint``
    always names a complete file and the last good checkpoint is never removed before the
    next one exists. The same holds for the ``save_best`` checkpoint: the new best file is
    written and published before the previous one is removed. Takes the same arguments as
    ``CheckpointHook``. Storage backends other than the local file system are handled by
    ``CheckpointHook`` itself.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process() and isinstance(self.file_backend, LocalBackend):
            for stale in glob.glob(osp.join(glob.escape(self.out_dir), '*' + PARTIAL_SUFFIX)):
                os.remove(stale)  # left by a run killed while writing

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        if not isinstance(self.file_backend, LocalBackend):
            return super()._save_checkpoint_with_step(runner, step, meta)
        expired = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                expired = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            osp.basename(partial_name(filename)),
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        publish(partial_name(self.last_ckpt), self.last_ckpt)
        write_text_atomic(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        if expired is not None and expired != step:
            old = osp.join(self.out_dir, self.filename_tmpl.format(expired))
            if osp.isfile(old):
                os.remove(old)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        if not self.save_best or not isinstance(self.file_backend, LocalBackend):
            return super()._save_best_checkpoint(runner, metrics)
        # CheckpointHook removes the previous best file, then writes the new one: a kill in
        # between would leave no best checkpoint. Its writes of best files go to partial
        # files here and its removals wait until the new files are published.
        written, stale = [], []
        save, remove = runner.save_checkpoint, self.file_backend.remove

        def save_best(out_dir, filename, *args, **kwargs):
            if not osp.basename(filename).startswith('best_'):
                return save(out_dir, filename, *args, **kwargs)  # the latest, re-saved
            save(out_dir, osp.basename(partial_name(filename)), *args, **kwargs)
            written.append(osp.join(out_dir, filename))

        def remove_later(path):
            if osp.basename(path).startswith('best_'):
                stale.append(path)
            else:
                remove(path)

        runner.save_checkpoint, self.file_backend.remove = save_best, remove_later
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            runner.save_checkpoint, self.file_backend.remove = save, remove
        if is_main_process():
            for path in written:
                publish(partial_name(path), path)
            for path in stale:
                if path not in written and osp.isfile(path):
                    os.remove(path)


def _capture_rng() -> Dict[str, Any]:
    """The global random states of Python, numpy and torch, as plain values and tensors."""
    np_state = np.random.get_state(legacy=False)
    state = dict(
        python=random.getstate(),
        numpy=dict(key=torch.from_numpy(np_state['state']['key'].astype(np.int64)),
                   pos=int(np_state['state']['pos']), has_gauss=int(np_state['has_gauss']),
                   gauss=float(np_state['gauss'])),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: Dict[str, Any]) -> None:
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    numpy = state['numpy']
    np.random.set_state(dict(
        bit_generator='MT19937',
        state=dict(key=numpy['key'].numpy().astype(np.uint32), pos=numpy['pos']),
        has_gauss=numpy['has_gauss'], gauss=numpy['gauss']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@HOOKS.register_module()
class SafeLoggerHook(LoggerHook):
    """mmengine's :class:`LoggerHook`, except that the test metrics file is written by the
    main process only, and atomically.

    mmengine writes ``<timestamp>.json`` after a test from every process at once, each
    truncating and rewriting the same file; when the processes' texts differ in length (their
    timings do), the file can end up as one object followed by the tail of another, which no
    JSON reader accepts. Here the other processes only log.
    """

    def after_test_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        tag, log_str = runner.log_processor.get_log_after_epoch(
            runner, len(runner.test_dataloader), 'test', with_non_scalar=True)
        runner.logger.info(log_str)
        if is_main_process():
            text = json.dumps(self._process_tags(tag))
            write_text_atomic(osp.join(runner.log_dir, self.json_log_path), text + '\n')


class _RestoreAfter:
    """Iterator wrapper that restores the random states right after the ``skip``-th item,
    i.e. once the iteration-based loop has fast-forwarded its data past what was trained."""

    def __init__(self, iterator: Iterator, skip: int, state: Dict[str, Any]) -> None:
        self._iterator, self._left, self._state = iterator, skip, state

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self._iterator)
        if self._left > 0:
            self._left -= 1
            if self._left == 0:
                _restore_rng(self._state)
        return item

    def __getattr__(self, name):
        return getattr(self._iterator, name)


@HOOKS.register_module()
class TrainingStateHook(Hook):
    """Makes a resumed run continue exactly where the checkpoint left it.

    - Saves the global random states (Python, numpy, torch, CUDA) in every checkpoint and
      restores them when training resumes, at the point the uninterrupted run had reached:
      before the next epoch's data is drawn (epoch-based loops), or after the fast-forward
      over already-trained iterations (iteration-based loops). With
      ``randomness=dict(seed=..., deterministic=True)`` a killed and resumed run ends with
      the same weights as one that ran through.
    - Keeps validation during training from consuming the training random stream, so the
      training run does not depend on where validation happened.
    - Refuses a checkpoint that does not fit the model (``load_from``, ``--resume``,
      ``tools/test.py``): tensors of other shapes or missing tensors, naming the first ones,
      instead of loading part of it; ``partial_load=True`` allows a partial ``load_from``.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._resumed_rng: Optional[Dict[str, Any]] = None
        self._val_rng: Optional[Dict[str, Any]] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = _capture_rng()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state_dict = checkpoint.get('state_dict', checkpoint)
        if isinstance(state_dict, dict):
            self._check_fit(runner, model, state_dict)
        self._resumed_rng = checkpoint.get('rng_state')

    @staticmethod
    def _check_fit(runner, model, state_dict: dict) -> None:
        """Refuses a checkpoint with tensors of other shapes or without some of the model's
        tensors; ``partial_load=True`` in the config (``--partial-load``) lets ``load_from``
        load what fits, for fine-tuning."""
        problems = checkpoint_misfit(model, state_dict)
        if not problems:
            return
        if getattr(runner, '_resume', False):
            raise CheckpointError(
                f'cannot resume: the checkpoint does not fit the model: {problems}. It was '
                f'saved by a different config (arch, num_classes, ...); resume with the '
                f'config that wrote it')
        if not runner.cfg.get('partial_load', False):
            raise CheckpointError(
                f'checkpoint {runner._load_from!r} does not fit the model: {problems}. Use '
                f'the checkpoint made for this config, or, to fine-tune from part of it, '
                f'pass --partial-load to tools/train.py (partial_load=True)')
        print_log(f'partial load of {runner._load_from!r}: {problems}; those tensors keep '
                  f'their initialisation', logger='current', level=logging.WARNING)

    def before_train(self, runner) -> None:
        state, self._resumed_rng = self._resumed_rng, None
        if state is None or (runner.iter == 0 and runner.epoch == 0):
            return  # a fresh run, or load_from (fine-tuning) rather than resume
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop) and loop.iter > 0:
            loop.dataloader_iterator = _RestoreAfter(loop.dataloader_iterator, loop.iter, state)
        else:
            _restore_rng(state)
        loader = loop.dataloader
        if getattr(loader, 'persistent_workers', False) and loader.num_workers > 0:
            print_log('persistent_workers=True: the data workers restart with fresh random '
                      'states, so augmentations after this resume differ from an '
                      'uninterrupted run; set train_dataloader.persistent_workers=False for '
                      'exact resumption', logger='current', level=logging.WARNING)

    def before_val_epoch(self, runner) -> None:
        self._val_rng = _capture_rng()

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self._val_rng is not None:
            _restore_rng(self._val_rng)
            self._val_rng = None


@HOOKS.register_module()
class CompileBackboneHook(Hook):
    """Compiles the model's backbone with ``torch.compile`` before the run starts.

    HireMLP's forward has no graph break and decides nothing in Python from the input size,
    so with ``dynamic=True`` (the default here) one graph serves the images of every size
    that multi-scale training and keep-ratio testing feed it. The rest of a detector or
    segmentor (proposal sampling, NMS, losses) stays eager, where it would otherwise break
    the graph many times and recompile with every new number of boxes.

    The tools put it in place of ``compile=...`` in a config (``--cfg-options
    compile=True``); another project adds it with ``custom_hooks=[dict(type=
    'CompileBackboneHook')]`` and ``custom_imports=dict(imports=['mmhire'])``.

    Args:
        **options: Keyword arguments of ``torch.compile`` (``backend``, ``mode``,
            ``dynamic``, ...). Defaults to ``dynamic=True``, and with inductor to the
            settings of :func:`mmhire.utils.compat.compile_kwargs`.
    """

    priority = 'VERY_HIGH'

    def __init__(self, **options) -> None:
        self.options = compile_kwargs(**options)

    def before_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        backbone = getattr(model, 'backbone', None)
        if backbone is None:
            raise RuntimeError(f'CompileBackboneHook: {type(model).__name__} has no backbone '
                               f'to compile; remove compile from the config')
        if getattr(backbone, '_mmhire_compiled', False):
            return
        backbone.forward = torch.compile(backbone.forward, **self.options)
        backbone._mmhire_compiled = True
        print_log(f'compiled the backbone ({type(backbone).__name__}) with torch.compile('
                  f'{", ".join(f"{k}={v!r}" for k, v in self.options.items())}); the first '
                  f'iterations are slow', logger='current')

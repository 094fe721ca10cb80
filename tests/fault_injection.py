"""Kills the training process that imports it at a chosen point, with SIGKILL.

Imported through ``custom_imports`` by the kill-and-resume tests. ``MMHIRE_TEST_KILL`` says
where: ``iter:N`` right after training iteration N, ``val:N`` at the start of the N-th
validation, ``save:N`` halfway through writing the N-th checkpoint file (half the bytes are
on disk when the process dies).
"""
import os
import signal

from mmengine.evaluator import BaseMetric
from mmengine.fileio import LocalBackend
from mmengine.hooks import Hook
from mmengine.registry import HOOKS, METRICS

_POINT, _, _COUNT = os.environ.get('MMHIRE_TEST_KILL', ':').partition(':')
_COUNT = int(_COUNT or 0)


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class KillHook(Hook):
    priority = 'HIGHEST'

    def __init__(self):
        self.vals = 0

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if _POINT == 'iter' and runner.iter == _COUNT:
            _die()

    def before_val_epoch(self, runner):
        self.vals += 1
        if _POINT == 'val' and self.vals == _COUNT:
            _die()


@METRICS.register_module()
class EvalCount(BaseMetric):
    """``count/evals``: how many evaluations this process ran; every one is a new best."""
    default_prefix = 'count'

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.evals = 0

    def process(self, data_batch, data_samples):
        self.results.append(len(data_samples))

    def compute_metrics(self, results):
        self.evals += 1
        return dict(evals=self.evals)


if _POINT == 'save':
    _put = LocalBackend.put
    _saves = [0]

    def _put_then_die(self, obj, filepath):
        if str(filepath).endswith(('.pth', '.pth.partial')):
            _saves[0] += 1
            if _saves[0] == _COUNT:
                with open(filepath, 'wb') as f:
                    f.write(obj[:len(obj) // 2])
                    f.flush()
                    os.fsync(f.fileno())
                _die()
        return _put(self, obj, filepath)

    LocalBackend.put = _put_then_die

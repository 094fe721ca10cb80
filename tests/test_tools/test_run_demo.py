"""The demo main job's code path (tools/run_demo.py), shortened to one epoch on a few images."""
import json
import os

import cv2
from conftest import load_tool

from mmhire.datasets.demo_data import make_imagenet_demo

run_demo_tool = load_tool('run_demo.py')


def test_demo_job_writes_metrics_pictures_and_curve(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_imagenet_demo('data/demo/imagenet', num_train_per_class=4, num_val_per_class=2,
                       size=48)
    options = [f'{loader}.{key}' for loader in ('train_dataloader', 'val_dataloader',
                                                'test_dataloader')
               for key in ('num_workers=0', 'persistent_workers=False')]
    options += ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                'train_dataloader.batch_size=4', 'param_scheduler.0.end=1',
                'param_scheduler.1.begin=1', 'param_scheduler.1.end=2',
                'default_hooks.logger.interval=1']
    assert run_demo_tool.main(['--task', 'cls', '--pictures', '3', '--cfg-options',
                               *options]) == 0
    out = capsys.readouterr().out
    assert 'accuracy/top1' in out and 'untrained' in out
    task_dir = tmp_path / 'work_dirs/demo/cls'
    summary = json.loads((task_dir / 'summary.json').read_text())
    assert summary['data_generated'] is False  # the existing set was used, not replaced
    assert set(summary['trained']) == set(summary['untrained']) == {'accuracy/top1'}
    assert all(isinstance(v, float) for v in summary['trained'].values())
    assert summary['logged_iterations'] >= 1
    pictures = cv2.imread(str(task_dir / 'predictions.png'))
    curve = cv2.imread(str(task_dir / 'loss_curve.png'))
    assert pictures is not None and pictures.shape[1] > pictures.shape[0]  # a row of 3
    assert curve is not None
    assert len(os.listdir(task_dir / 'predictions')) == 3

"""The suite's own set-up: pytest-xdist workers share the cores."""
import os

import torch
from conftest import share_cores_between_workers


def test_workers_share_the_cores(monkeypatch):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    before = torch.get_num_threads()
    monkeypatch.setenv('PYTEST_XDIST_WORKER_COUNT', '2')
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    try:
        assert share_cores_between_workers() == max(1, cores // 2)
        assert os.environ['OMP_NUM_THREADS'] == str(max(1, cores // 2))  # for subprocesses
        assert torch.get_num_threads() == max(1, cores // 2)
        # a caller's OMP_NUM_THREADS wins, and one process keeps every core
        monkeypatch.setenv('OMP_NUM_THREADS', '3')
        assert share_cores_between_workers() is None
        monkeypatch.delenv('OMP_NUM_THREADS')
        monkeypatch.setenv('PYTEST_XDIST_WORKER_COUNT', '1')
        assert share_cores_between_workers() is None and 'OMP_NUM_THREADS' not in os.environ
    finally:
        torch.set_num_threads(before)

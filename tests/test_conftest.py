"""The suite's own set-up: pytest-xdist workers share the cores and start with the longest
modules; a module's temporary folders go when its tests pass, and what the tools it starts leave
in TMPDIR with the suite's own."""
import glob
import os

import torch
from conftest import LONGEST_FIRST, REPO_ROOT, share_cores_between_workers

pytest_plugins = ['pytester']


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


MODULE = """
import pytest

@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp('{name}')

def test_writes(folder):
    (folder / 'weights.pth').write_bytes(b'0' * 1000)
    assert {passes}
"""


def test_a_passed_modules_folders_go_a_failed_ones_stay(pytester):
    with open(os.path.join(REPO_ROOT, 'tests', 'conftest.py')) as f:
        pytester.makeconftest(f.read())
    pytester.makepyfile(test_passing=MODULE.format(name='passing', passes=True),
                        test_failing=MODULE.format(name='failing', passes=False))
    base = pytester.path / 'base'
    result = pytester.runpytest_subprocess('-p', 'no:cacheprovider', '-p', 'no:xdist',
                                           f'--basetemp={base}')
    result.assert_outcomes(passed=1, failed=1)
    left = sorted(p.name for p in base.iterdir())
    assert 'passing0' not in left and 'failing0' in left, left
    assert (base / 'failing0' / 'weights.pth').is_file()


def test_the_longest_modules_are_test_modules(request):
    modules = {os.path.basename(p) for p in glob.glob(
        os.path.join(REPO_ROOT, 'tests', '**', 'test_*.py'), recursive=True)}
    assert set(LONGEST_FIRST) <= modules and len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
    # collected in that order, each module's tests together
    names = [item.path.name for item in request.session.items]
    firsts = list(dict.fromkeys(names))
    if set(LONGEST_FIRST) <= set(firsts):  # the whole suite was collected
        assert firsts[:len(LONGEST_FIRST)] == list(LONGEST_FIRST)
    assert len(firsts) == len([k for k, n in enumerate(names) if k == 0 or n != names[k - 1]])


SPAWNS = """
import os, subprocess, sys, tempfile

def test_leaves_a_folder(tmp_path_factory):
    made = subprocess.run([sys.executable, '-c', 'import tempfile; print(tempfile.mkdtemp())'],
                          capture_output=True, text=True, check=True).stdout.strip()
    base = str(tmp_path_factory.getbasetemp())
    assert made.startswith(base + os.sep), made
    assert tempfile.mkdtemp().startswith(base + os.sep)
    print('MADE', made)
"""


def test_what_subprocesses_leave_in_tmp_goes_with_the_suite(pytester):
    with open(os.path.join(REPO_ROOT, 'tests', 'conftest.py')) as f:
        pytester.makeconftest(f.read())
    pytester.makepyfile(test_spawns=SPAWNS)
    base = pytester.path / 'base'
    result = pytester.runpytest_subprocess('-p', 'no:cacheprovider', '-p', 'no:xdist', '-s',
                                           f'--basetemp={base}')
    result.assert_outcomes(passed=1)
    made = next(line.split('MADE ')[1] for line in result.outlines if 'MADE ' in line)
    assert not os.path.exists(made)

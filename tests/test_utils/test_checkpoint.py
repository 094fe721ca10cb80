"""Checkpoint loading is weights-only on every path mmhire uses; writing is atomic."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import CONFIG_DIR, REPO_ROOT, load_tool
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import CheckpointLoader

from mmhire.datasets.demo_data import make_imagenet_demo
from mmhire.models import HireMLP
from mmhire.utils import CheckpointError, safe_load, save_checkpoint_atomic, write_text_atomic

converter = load_tool('model_converters/hire_mlp_to_mmhire.py')
train_tool = load_tool('train.py')
test_tool = load_tool('test.py')


class _RunsCode:
    """Unpickling this creates ``marker``: a stand-in for any code a crafted file runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))


class _GetattrEscape:
    """Abuses the ``getattr`` that mmengine checkpoints need: getattr(os, 'system')."""

    def __reduce__(self):
        return (getattr, (_Import(), 'system'))


class _Import:

    def __reduce__(self):
        return (__import__, ('os', ))


def crafted(path, marker, pickled_directly=False):
    payload = {'state_dict': {'w': torch.ones(2)}, 'meta': {'x': _RunsCode(marker)}}
    if pickled_directly:
        with open(path, 'wb') as f:
            pickle.dump(payload, f)
    else:
        torch.save(payload, path)
    return str(path)


def mmengine_style_checkpoint():
    """What mmengine's Runner writes besides the weights: the message hub's history buffers,
    numpy scalars and arrays."""
    hub = MessageHub.get_instance('mmhire_test_checkpoint')
    for value in (1.5, np.float64(2.5), 3.0):
        hub.update_scalar('train/loss', value)
    hub.update_info('eta', np.float64(12.0))
    hub.update_info('keep_ckpt_ids', [1, 2])
    return dict(meta=dict(seed=np.int64(3), epoch=1, arr=np.arange(3)),
                message_hub=hub.state_dict(), state_dict={'w': torch.ones(2)})


def test_mmengine_checkpoints_load_with_only_their_types_allowed(tmp_path):
    path = tmp_path / 'epoch_1.pth'
    torch.save(mmengine_style_checkpoint(), path)
    with pytest.raises(Exception, match='getattr|HistoryBuffer|numpy'):
        torch.load(path, weights_only=True)  # plain weights-only loading refuses it
    loaded = safe_load(str(path))
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    assert buffer.mean() == pytest.approx(7.0 / 3) and buffer.current() == 3.0
    assert loaded['meta']['seed'] == 3 and loaded['meta']['arr'].tolist() == [0, 1, 2]
    # mmengine's own loader (resume, load_from, Pretrained) is this one once mmhire is imported
    assert CheckpointLoader.load_checkpoint(str(path))['meta']['epoch'] == 1


@pytest.mark.parametrize('make', [
    lambda path, marker: crafted(path, marker),
    lambda path, marker: crafted(path, marker, pickled_directly=True),
    lambda path, marker: torch.save({'x': _GetattrEscape()}, path) or str(path),
])
def test_crafted_files_are_refused_and_run_nothing(tmp_path, make):
    marker = tmp_path / 'marker'
    path = make(tmp_path / 'evil.pth', marker)
    with pytest.raises(CheckpointError, match='refused to load checkpoint') as info:
        safe_load(path)
    assert 'weights_only=False' not in str(info.value)
    assert not marker.exists()


def test_marker_converter(tmp_path, capsys):
    marker = tmp_path / 'marker'
    src = crafted(tmp_path / 'released.pth', marker)
    assert converter.main([src, str(tmp_path / 'out.pth')]) == 1
    assert 'refused to load checkpoint' in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / 'out.pth').exists()


def test_marker_pretrained_init(tmp_path):
    marker = tmp_path / 'marker'
    path = crafted(tmp_path / 'backbone.pth', marker)
    model = HireMLP('tiny', init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointError, match='refused to load checkpoint'):
        model.init_weights()
    assert not marker.exists()


@pytest.fixture(scope='module')
def cls_workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp('cls')
    make_imagenet_demo(str(root / 'data/demo/imagenet'), num_train_per_class=1,
                       num_val_per_class=1, size=48)
    return root


CLS = os.path.join(CONFIG_DIR, 'demo', 'hire_t_in1k_demo.py')
NO_WORKERS = ['train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
              'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
              'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']


def test_marker_resume_and_load_from(cls_workspace, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(cls_workspace)
    marker = tmp_path / 'marker'
    path = crafted(tmp_path / 'epoch_1.pth', marker)
    assert train_tool.main([CLS, '--work-dir', str(tmp_path / 'w'), '--resume', path,
                            '--cfg-options', *NO_WORKERS]) == 1
    assert 'refused to load checkpoint' in capsys.readouterr().err
    assert test_tool.main([CLS, path, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                           *NO_WORKERS]) == 1
    assert 'refused to load checkpoint' in capsys.readouterr().err
    assert not marker.exists()


def test_resume_refuses_a_checkpoint_of_another_model(cls_workspace, tmp_path, monkeypatch,
                                                      capsys):
    monkeypatch.chdir(cls_workspace)
    other = HireMLP('small').state_dict()
    other = {f'backbone.{k}': v for k, v in other.items()}
    other['backbone.stages.0.0.norm1.weight'] = torch.ones(7)
    path = tmp_path / 'other.pth'
    torch.save(dict(state_dict=other, meta=dict(epoch=1, iter=1)), path)
    assert train_tool.main([CLS, '--work-dir', str(tmp_path / 'w'), '--resume', str(path),
                            '--cfg-options', *NO_WORKERS]) == 1
    err = capsys.readouterr().err
    assert 'cannot resume' in err and 'backbone.stages.0.0.norm1.weight' in err
    assert 'checkpoint (7,), model (64,)' in err


def test_corrupt_files_are_named(tmp_path):
    good = tmp_path / 'good.pth'
    save_checkpoint_atomic({'state_dict': {'w': torch.ones(1000)}}, str(good))
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:300])
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'this is not a checkpoint')
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    for path in (truncated, garbage, empty):
        with pytest.raises(CheckpointError, match='truncated or corrupt') as info:
            safe_load(str(path))
        assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        safe_load(str(tmp_path / 'missing.pth'))


def test_atomic_writes_keep_the_old_file_on_failure(tmp_path, monkeypatch):
    dst = tmp_path / 'out.pth'
    save_checkpoint_atomic({'a': torch.ones(2)}, str(dst))
    write_text_atomic(str(tmp_path / 'last_checkpoint'), 'first')

    def failing_save(obj, path):
        with open(path, 'wb') as f:
            f.write(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', failing_save)
    with pytest.raises(OSError, match='disk full'):
        save_checkpoint_atomic({'a': torch.zeros(2)}, str(dst))
    monkeypatch.undo()
    assert torch.equal(safe_load(str(dst))['a'], torch.ones(2))
    write_text_atomic(str(tmp_path / 'last_checkpoint'), 'second')
    assert (tmp_path / 'last_checkpoint').read_text() == 'second'
    assert sorted(os.listdir(tmp_path)) == ['last_checkpoint', 'out.pth']


def test_converter_killed_mid_write_leaves_no_file(tmp_path):
    """SIGKILL during the converter's save: the destination never exists half-written."""
    src = tmp_path / 'src.pth'
    torch.save({'w': torch.ones(10)}, src)
    script = (
        'import os, signal, torch\n'
        'from mmhire.utils import save_checkpoint_atomic\n'
        'def save(obj, path):\n'
        '    open(path, "wb").write(b"half")\n'
        '    os.kill(os.getpid(), signal.SIGKILL)\n'
        'torch.save = save\n'
        f'save_checkpoint_atomic({{"w": 1}}, {str(tmp_path / "dst.pth")!r})\n')
    result = subprocess.run([sys.executable, '-c', script], cwd=REPO_ROOT)
    assert result.returncode == -9
    assert not (tmp_path / 'dst.pth').exists()

"""Checkpoint loading is weights-only on every path mmhire uses; writing is atomic.

The direct loading tests run both ways of loading: torch's weights-only loader with its
allow-list API (torch >= 2.6) and the restricted unpickler that older torch gets; each
stack's own way is what the tools use there.
"""
import argparse
import collections
import functools
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
from mmhire.utils import (
    CheckpointError,
    compat,
    safe_load,
    save_checkpoint_atomic,
    write_text_atomic,
)
from mmhire.utils import checkpoint as checkpoint_module

pytestmark = pytest.mark.floor

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
    return dict(meta=dict(seed=np.int64(3), epoch=1, arr=np.arange(3),
                          counts=collections.Counter('aab'), ids={1, 2}),
                message_hub=hub.state_dict(), state_dict={'w': torch.ones(2)})


@pytest.fixture(params=['native', 'restricted'])
def load(request):
    """safe_load with torch's allow-list API or with the restricted unpickler."""
    native = request.param == 'native'
    if native and not checkpoint_module.NATIVE_ALLOW_LIST:
        pytest.skip(f'torch {torch.__version__} has no weights-only allow-list API (2.6+); '
                    f'the restricted case covers this torch')
    return functools.partial(safe_load, native=native)


def test_each_torch_gets_a_way_to_load():
    assert checkpoint_module.NATIVE_ALLOW_LIST == (compat.TORCH_VERSION[:2] >= (2, 6))


def test_mmengine_checkpoints_load_with_only_their_types_allowed(tmp_path, load):
    path = tmp_path / 'epoch_1.pth'
    torch.save(mmengine_style_checkpoint(), path)
    with pytest.raises(Exception, match='getattr|HistoryBuffer|numpy|build'):
        torch.load(path, weights_only=True)  # plain weights-only loading refuses it
    loaded = load(str(path))
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    assert buffer.mean() == pytest.approx(7.0 / 3) and buffer.current() == 3.0
    assert loaded['meta']['seed'] == 3 and loaded['meta']['arr'].tolist() == [0, 1, 2]
    assert loaded['meta']['counts'] == {'a': 2, 'b': 1} and loaded['meta']['ids'] == {1, 2}
    # mmengine's own loader (resume, load_from, Pretrained) is this one once mmhire is imported
    assert CheckpointLoader.load_checkpoint(str(path))['meta']['epoch'] == 1


@pytest.mark.parametrize('make', [
    lambda path, marker: crafted(path, marker),
    lambda path, marker: crafted(path, marker, pickled_directly=True),
    lambda path, marker: torch.save({'x': _GetattrEscape()}, path) or str(path),
])
def test_crafted_files_are_refused_and_run_nothing(tmp_path, make, load):
    marker = tmp_path / 'marker'
    path = make(tmp_path / 'evil.pth', marker)
    with pytest.raises(CheckpointError, match='refused to load checkpoint') as info:
        load(path)
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


def test_load_from_and_test_refuse_a_checkpoint_that_does_not_fit(cls_workspace, tmp_path,
                                                                  monkeypatch, capsys):
    """tools/test.py CKPT and load_from stop, as --resume does; --partial-load lets training
    start from the part that fits."""
    monkeypatch.chdir(cls_workspace)
    other = HireMLP('small').state_dict()
    other = {f'backbone.{k}': v for k, v in other.items()}  # no head: missing tensors
    other['backbone.stages.0.0.norm1.weight'] = torch.ones(7)
    path = tmp_path / 'other.pth'
    torch.save(dict(state_dict=other, meta=dict(epoch=1, iter=1)), path)
    assert test_tool.main([CLS, str(path), '--work-dir', str(tmp_path / 't'),
                           '--cfg-options', *NO_WORKERS]) == 1
    err = capsys.readouterr().err
    assert 'does not fit the model' in err and 'checkpoint (7,), model (64,)' in err
    assert "tensors are missing, first head.fc.weight" in err
    one_epoch = ['train_cfg.max_epochs=1', 'train_dataloader.batch_size=4']
    assert train_tool.main([CLS, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                            f'load_from={path}', *one_epoch, *NO_WORKERS]) == 1
    assert '--partial-load' in capsys.readouterr().err
    assert not list((tmp_path / 'w').glob('*.pth'))
    assert train_tool.main([CLS, '--work-dir', str(tmp_path / 'w'), '--partial-load',
                            '--cfg-options', f'load_from={path}', *one_epoch,
                            *NO_WORKERS]) == 0
    assert list((tmp_path / 'w').glob('epoch_1.pth'))


def test_legacy_format_and_parameters_load(tmp_path, load):
    """Files torch wrote before its zip format, and nn.Parameter values."""
    path = tmp_path / 'legacy.pth'
    weights = {'w': torch.arange(4.), 'p': torch.nn.Parameter(torch.ones(2, 3))}
    torch.save(weights, path, _use_new_zipfile_serialization=False)
    loaded = load(str(path))
    assert torch.equal(loaded['w'], weights['w']) and torch.equal(loaded['p'], weights['p'])


def test_allowed_replaces_the_default_allow_list(tmp_path, load):
    """A caller that names its types gets exactly those: a Namespace loads when allowed,
    and mmengine's types are no longer allowed then."""
    path = tmp_path / 'args.pth'
    torch.save({'args': argparse.Namespace(lr=1e-3, model='hire_mlp_tiny')}, path)
    with pytest.raises(CheckpointError, match='argparse.Namespace'):
        load(str(path))
    assert load(str(path), allowed=[argparse.Namespace])['args'].lr == 1e-3
    hub = tmp_path / 'hub.pth'
    torch.save(mmengine_style_checkpoint(), hub)
    with pytest.raises(CheckpointError, match='refused.*only tensors, plain containers and '
                       'argparse.Namespace are allowed'):
        load(str(hub), allowed=[argparse.Namespace])


def test_environment_errors_are_not_blamed_on_the_file(tmp_path, monkeypatch):
    """A readable file whose load fails for another reason is never called corrupt."""
    path = tmp_path / 'good.pth'
    torch.save({'w': torch.ones(2)}, path)

    def broken(*args, **kwargs):
        raise AttributeError("module 'torch.serialization' has no attribute 'x'")

    monkeypatch.setattr(torch, 'load', broken)
    with pytest.raises(AttributeError, match='has no attribute'):
        safe_load(str(path))


def test_too_old_torch_is_named(tmp_path, monkeypatch):
    path = tmp_path / 'good.pth'
    torch.save({'w': torch.ones(2)}, path)
    monkeypatch.setattr(compat, 'TORCH_VERSION', (2, 0, 1))
    with pytest.raises(RuntimeError, match=r'mmhire needs torch >= 2\.1, but torch .* is '
                       'installed'):
        safe_load(str(path))


def test_corrupt_files_are_named(tmp_path, load):
    good = tmp_path / 'good.pth'
    save_checkpoint_atomic({'state_dict': {'w': torch.ones(1000)}}, str(good))
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:300])
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'this is not a checkpoint')
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    checked = 0
    for path in (truncated, garbage, empty):
        with pytest.raises(CheckpointError, match='truncated or corrupt') as info:
            load(str(path))
        assert str(path) in str(info.value)
        checked += 1
    assert checked == 3
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load(str(tmp_path / 'missing.pth'))


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

"""`python -m mmhire weights`: the released weights in one command, without the internet. A
server on 127.0.0.1 (and file:// URLs) serves a file in the release's format, as served
whole, cut short, refused or never answered."""
import contextlib
import http.server
import os
import threading
import time

import pytest
import torch
from conftest import CONFIG_DIR
from reference_hire_mlp import ReferenceHireMLPNet, deit_style_checkpoint, randomize_

from mmhire.__main__ import main as mmhire_main
from mmhire.models.utils import weights
from mmhire.utils.config import build_model, load_config

pytestmark = pytest.mark.floor


@pytest.fixture(scope='module')
def release(tmp_path_factory):
    """The reference model (released layout) and its file as the release's script saves it."""
    folder = tmp_path_factory.mktemp('release')
    reference = randomize_(ReferenceHireMLPNet('tiny'), seed=3).eval()
    ema = randomize_(ReferenceHireMLPNet('tiny'), seed=4).state_dict()
    path = folder / 'hire_mlp_tiny.pth'
    torch.save(deit_style_checkpoint(reference, ema), path)
    return reference, path


class Handler(http.server.BaseHTTPRequestHandler):
    """/ok/<name>: the file; /short/<name>: announces the whole length, sends half;
    /unsized/<name>: half the file with no length; /slow/<name>: answers after 5 s;
    anything else: 404."""
    files: dict = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        mode, _, name = self.path.strip('/').partition('/')
        data = self.files.get(name)
        if data is None or mode not in ('ok', 'short', 'unsized', 'slow'):
            self.send_error(404, 'Not Found')
            return
        if mode == 'slow':
            time.sleep(5)
        self.send_response(200)
        if mode != 'unsized':
            self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data if mode in ('ok', 'slow') else data[:len(data) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope='module')
def server(release):
    _, path = release
    Handler.files = {path.name: path.read_bytes()}
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def leftovers(folder):
    """Every file under ``folder``: a failed run must leave none behind."""
    return sorted(os.path.relpath(os.path.join(root, f), folder)
                  for root, _, files in os.walk(folder) for f in files)


def assert_equals_release(path, reference):
    model = build_model(load_config(os.path.join(CONFIG_DIR, 'hire_t_in1k.py')))
    model.load_state_dict(torch.load(path, weights_only=True)['state_dict'], strict=True)
    model.eval().double()
    reference = reference.double()
    x = torch.randn(2, 3, 96, 160, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (model(x, mode='tensor') - reference(x)).abs().max() < 1e-6
    reference.float()


def test_downloads_converts_and_writes_where_configs_look(release, server, workdir, capsys,
                                                          monkeypatch):
    """Without --url the file comes from the release's address (here the local server)."""
    reference, path = release
    monkeypatch.setattr(weights, 'RELEASE', f'{server}/ok')
    assert mmhire_main(['weights', 'tiny']) == 0
    out = workdir / 'checkpoints' / 'hire_t_in1k.pth'
    assert leftovers(workdir) == ['checkpoints/hire_t_in1k.pth']
    assert_equals_release(out, reference)
    meta = torch.load(out, weights_only=True)['meta']
    assert meta['source'] == f'{server}/ok/hire_mlp_tiny.pth'
    assert meta['sha256'] == weights.sha256_of(path) and meta['arch'] == 'tiny'
    printed = capsys.readouterr().out
    assert ("init_cfg=dict(type='Pretrained', checkpoint='checkpoints/hire_t_in1k.pth', "
            "prefix='backbone.')") in printed
    assert 'python tools/test.py configs/hire_t_in1k.py checkpoints/hire_t_in1k.pth' in printed


def test_release_addresses():
    for size, short in [('tiny', 't'), ('small', 's'), ('base', 'b')]:
        assert weights.release_url(size) == (
            'https://github.com/ggjy/Hire-Wave-MLP.pytorch/releases/download/log/'
            f'hire_mlp_{size}.pth')
        assert weights.SIZES[size][1] == f'checkpoints/hire_{short}_in1k.pth'
        assert os.path.isfile(os.path.join(CONFIG_DIR, f'hire_{short}_in1k.py'))


def test_file_url_local_file_and_ema(release, workdir):
    reference, path = release
    assert weights.main(['tiny', '--url', path.as_uri(), '--out', 'a/from_url.pth']) == 0
    assert_equals_release(workdir / 'a' / 'from_url.pth', reference)
    assert weights.main(['tiny', '--file', str(path), '--out', 'b.pth', '--use-ema']) == 0
    ema = torch.load(path, weights_only=False)['model_ema']
    got = torch.load(workdir / 'b.pth', weights_only=True)['state_dict']
    assert torch.equal(got['head.fc.weight'], ema['head.weight'])


@pytest.mark.parametrize('mode, words', [
    ('short', 'ended after'),                       # the length announced, half sent
    ('unsized', 'truncated or corrupt'),            # half sent, no length: torch cannot read it
    ('missing', 'answered 404'),
])
def test_failed_download_leaves_nothing(release, server, workdir, capsys, mode, words):
    _, path = release
    assert weights.main(['tiny', '--url', f'{server}/{mode}/{path.name}']) == 1
    err = capsys.readouterr().err
    assert words in err and 'error:' in err
    assert leftovers(workdir) == []


def test_unreachable_and_silent_servers(release, server, workdir, capsys):
    _, path = release
    with contextlib.closing(__import__('socket').socket()) as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]   # bound, not listening: the connection is refused
        assert weights.main(['tiny', '--url', f'http://127.0.0.1:{port}/x.pth']) == 1
    assert 'could not download' in capsys.readouterr().err
    assert weights.main(['tiny', '--url', f'{server}/slow/{path.name}', '--timeout', '1']) == 1
    assert 'timed out' in capsys.readouterr().err
    assert leftovers(workdir) == []


def test_existing_output_is_kept_unless_forced(release, workdir, capsys):
    _, path = release
    out = workdir / 'checkpoints' / 'hire_t_in1k.pth'
    out.parent.mkdir()
    out.write_bytes(b'earlier')
    assert weights.main(['tiny', '--file', str(path)]) == 1
    assert 'already exists; pass --force' in capsys.readouterr().err
    assert out.read_bytes() == b'earlier'
    # a bad file with --force: the old output is still untouched
    bad = workdir / 'bad.pth'
    bad.write_bytes(b'not a checkpoint')
    assert weights.main(['tiny', '--file', str(bad), '--force']) == 1
    assert out.read_bytes() == b'earlier'
    assert weights.main(['tiny', '--file', str(path), '--force']) == 0
    assert set(torch.load(out, weights_only=True)) == {'meta', 'state_dict'}


def test_files_that_are_not_the_asked_for_release(release, workdir, capsys):
    _, path = release
    assert weights.main(['small', '--file', str(path)]) == 1
    assert 'holds Hire-MLP-tiny, not Hire-MLP-small' in capsys.readouterr().err
    resnet = workdir / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(1)}, resnet)
    assert weights.main(['tiny', '--file', str(resnet)]) == 1
    assert 'not a released Hire-MLP checkpoint' in capsys.readouterr().err
    assert weights.main(['tiny', '--file', str(workdir / 'nope.pth')]) == 1
    err = capsys.readouterr().err
    assert '--file' in err and 'does not exist' in err
    assert weights.main(['tiny', '--out', str(workdir), '--file', str(path)]) == 1
    assert 'is a folder' in capsys.readouterr().err
    assert leftovers(workdir) == ['resnet.pth']


def test_unknown_size_is_refused(capsys):
    with pytest.raises(SystemExit):
        weights.main(['large'])
    assert "invalid choice: 'large'" in capsys.readouterr().err

"""The released Hire-MLP ImageNet weights, downloaded and converted in one command.

    python -m mmhire weights tiny                       # -> checkpoints/hire_t_in1k.pth
    python -m mmhire weights small --file hire_mlp_small.pth
    python -m mmhire weights base --url https://mirror.example/hire_mlp_base.pth --out w.pth

The authors publish ``hire_mlp_{tiny,small,base}.pth`` (and their training logs
``hire-mlp-{tiny,small,base}-log.txt``) as assets of their GitHub release; there are no
released weights for large. The file is downloaded beside the output, checked (a complete
download, the release's format, the asked-for size), converted to mmhire's layout and renamed
into place; on any failure nothing is left behind and an existing output is untouched.
"""
import argparse
import hashlib
import os
import os.path as osp
import sys
import urllib.error
import urllib.request
from typing import Dict, List, Optional, Tuple

RELEASE = 'https://github.com/ggjy/Hire-Wave-MLP.pytorch/releases/download/log'
#: The released sizes: (released file, output). Their stage depths and stem width are
#: HireMLP's (:func:`released_arch`).
SIZES = {
    'tiny': ('hire_mlp_tiny.pth', 'checkpoints/hire_t_in1k.pth'),
    'small': ('hire_mlp_small.pth', 'checkpoints/hire_s_in1k.pth'),
    'base': ('hire_mlp_base.pth', 'checkpoints/hire_b_in1k.pth'),
}
CONFIGS = {'tiny': 'hire_t', 'small': 'hire_s', 'base': 'hire_b'}
CHUNK = 1 << 20


class WeightsError(RuntimeError):
    """A download or a file that cannot become the asked-for checkpoint."""


def release_url(size: str) -> str:
    return f'{RELEASE}/{SIZES[size][0]}'


def download(url: str, dst: str, timeout: float = 60.0, quiet: bool = False) -> str:
    """Copies ``url`` (http, https or file) to ``dst`` and returns the file's sha256.

    Raises:
        WeightsError: If the server cannot be reached or refuses, or the transfer ends before
            the length the server announced. ``dst`` may then hold part of the file: the
            caller removes it.
    """
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dst, 'wb') as out:
            length = response.headers.get('Content-Length')
            total = int(length) if length and length.isdigit() else None
            shown = 0
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if not quiet and total and received * 10 // total > shown:
                    shown = received * 10 // total
                    print(f'  {received / 2**20:.1f} of {total / 2**20:.1f} MiB',
                          file=sys.stderr)
    except urllib.error.HTTPError as err:
        raise WeightsError(f'could not download {url}: the server answered {err.code} '
                           f'{err.reason}') from err
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, 'reason', None) or err
        raise WeightsError(f'could not download {url} ({reason}) after {received} bytes') from err
    if total is not None and received != total:
        raise WeightsError(f'the download of {url} ended after {received} of {total} bytes '
                           f'(connection dropped?); run the command again')
    if received == 0:
        raise WeightsError(f'{url} gave an empty file')
    return digest.hexdigest()


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def released_arch(size: str) -> Tuple[Tuple[int, ...], int]:
    """Hire-MLP-``size``'s stage depths and stem width, from HireMLP's arch table."""
    from mmhire.models import HireMLP
    arch = HireMLP.arch_zoo[size]
    return tuple(arch['depths']), arch['channels'][0]


def released_layout(state_dict: Dict) -> Dict[str, object]:
    """The stage depths and stem width of a state dict in the release's key layout."""
    depths: List[int] = []
    for stage in range(4):
        blocks = {k.split('.')[2] for k in state_dict
                  if k.startswith(f'network.{2 * stage}.') and k.split('.')[2].isdigit()}
        depths.append(len(blocks))
    stem = state_dict.get('patch_embed.proj.weight')
    return dict(depths=tuple(depths), channels=None if stem is None else int(stem.shape[0]))


def convert_file(src: str, size: str, use_ema: bool = False) -> Dict:
    """Loads a released checkpoint (weights-only), checks that it is Hire-MLP-``size`` and
    returns the converted state dict, which loads strictly into ``configs/hire_*_in1k.py``."""
    from mmhire.models.utils import convert_hire_mlp, extract_state_dict
    from mmhire.utils import safe_load
    from mmhire.utils.checkpoint import strip_module_prefix

    try:
        checkpoint = safe_load(src, allowed=[argparse.Namespace])
        released = strip_module_prefix(extract_state_dict(checkpoint, use_ema))
    except (OSError, RuntimeError, KeyError, TypeError) as err:
        raise WeightsError(f'{src} is not a released Hire-MLP checkpoint: {err}') from err
    layout = released_layout(released)
    if not any(layout['depths']):
        raise WeightsError(f'{src} is not a released Hire-MLP checkpoint: it has no block '
                           f'weights (network.<i>.<j>...); its keys begin {list(released)[:3]}')
    depths, channels = released_arch(size)
    if layout['depths'] != depths or layout['channels'] != channels:
        named = [name for name in SIZES
                 if released_arch(name) == (layout['depths'], layout['channels'])]
        held = (f'Hire-MLP-{named[0]}' if named else
                f'stage depths {layout["depths"]} and stem width {layout["channels"]}')
        hint = (f'; ask for `{named[0]}`' if named else
                '; it is not one of the released models')
        raise WeightsError(f'{src} holds {held}, not Hire-MLP-{size} (stage depths '
                           f'{depths}){hint}')
    try:
        state_dict = convert_hire_mlp(released)
    except KeyError as err:
        raise WeightsError(f'{src} is not in the release\'s layout: {err.args[0]}') from err
    _check_loads(state_dict, size)
    return state_dict


def _check_loads(state_dict: Dict, size: str) -> None:
    """The converted weights must fill HireMLP-``size`` and a 1000-class linear head exactly."""
    from mmhire.models import HireMLP
    from mmhire.utils.checkpoint import shape_mismatches

    backbone = HireMLP(arch=size, out_indices=(3, ))
    prefix = 'backbone.'
    weights = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    missing = sorted(set(backbone.state_dict()) - set(weights))
    extra = sorted(set(weights) - set(backbone.state_dict()))
    bad, _ = shape_mismatches(backbone, weights, limit=3)
    head = state_dict.get('head.fc.weight')
    if missing or extra or bad or head is None or tuple(head.shape) != (1000, 512):
        raise WeightsError(
            f'the converted weights do not fit Hire-MLP-{size}: missing {missing[:3]}, '
            f'unexpected {extra[:3]}, other shapes {bad[:3]}, head '
            f'{None if head is None else tuple(head.shape)} (expected (1000, 512))')


def fetch(size: str, out: Optional[str] = None, url: Optional[str] = None,
          file: Optional[str] = None, use_ema: bool = False, force: bool = False,
          timeout: float = 60.0, quiet: bool = False) -> str:
    """Gets Hire-MLP-``size``'s released weights (from ``file``, ``url`` or the release),
    converts them and writes ``out``. Returns the path written.

    Raises:
        WeightsError: On a failed download, a file that is not the release's ``size`` model,
            or an existing ``out`` without ``force``. Nothing is written then.
    """
    from mmhire.utils.checkpoint import save_checkpoint_atomic

    if size not in SIZES:
        raise WeightsError(f'unknown size {size!r}: the release has {", ".join(SIZES)} '
                           '(no weights were released for large)')
    out = out or SIZES[size][1]
    if osp.isdir(out):
        raise WeightsError(f'--out {out} is a folder; give the file to write, e.g. '
                           f'{osp.join(out, osp.basename(SIZES[size][1]))}')
    if osp.exists(out) and not force:
        raise WeightsError(f'{out} already exists; pass --force to replace it')
    directory = osp.dirname(osp.abspath(out))
    os.makedirs(directory, exist_ok=True)
    part = osp.join(directory, f'.{osp.basename(out)}.{os.getpid()}.download')
    try:
        if file is not None:
            if not osp.isfile(file):
                raise WeightsError(f'--file {file} does not exist')
            source, digest = osp.abspath(file), sha256_of(file)
            state_dict = convert_file(file, size, use_ema)
        else:
            source = url or release_url(size)
            if not quiet:
                print(f'downloading {source}', file=sys.stderr)
            digest = download(source, part, timeout=timeout, quiet=quiet)
            state_dict = convert_file(part, size, use_ema)
        save_checkpoint_atomic(
            dict(meta=dict(source=source, sha256=digest, arch=size, ema=bool(use_ema),
                           converter='python -m mmhire weights'),
                 state_dict=state_dict), out)
    finally:
        if osp.exists(part):
            os.remove(part)
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m mmhire weights',
        description='Download the released Hire-MLP ImageNet weights and convert them for '
        'mmhire.')
    parser.add_argument('size', choices=sorted(SIZES), help='which released model')
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--url', help='download from this URL instead of the GitHub release '
                        '(http, https or file://)')
    source.add_argument('--file', help='convert this already downloaded file')
    parser.add_argument('--out', help='where to write the converted checkpoint (default: '
                        'checkpoints/hire_{t,s,b}_in1k.pth, where the configs look for it)')
    parser.add_argument('--use-ema', action='store_true',
                        help='convert the model_ema weights instead of model')
    parser.add_argument('--force', action='store_true', help='replace an existing --out')
    parser.add_argument('--timeout', type=float, default=60.0,
                        help='seconds to wait for the server (default: 60)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        out = fetch(args.size, out=args.out, url=args.url, file=args.file,
                    use_ema=args.use_ema, force=args.force, timeout=args.timeout)
    except WeightsError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    config = CONFIGS[args.size]
    print(f'wrote {out} (Hire-MLP-{args.size}, ImageNet-1k)\n'
          f'backbone of a detection or segmentation config:\n'
          f"    init_cfg=dict(type='Pretrained', checkpoint='{out}', prefix='backbone.')\n"
          f'the classifier: python tools/test.py configs/{config}_in1k.py {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

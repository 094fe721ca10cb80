"""Where mmhire's configs, tools and model index are: inside the installed package
(``mmhire/.mim/``, the layout ``mim`` reads, written by a regular ``pip install``) or beside
the package in a source checkout (an editable install)."""
import glob
import os
import os.path as osp
from typing import List

_PACKAGE = osp.dirname(osp.dirname(osp.abspath(__file__)))


def mim_root() -> str:
    """The folder holding ``configs/``, ``tools/`` and ``model-index.yml``."""
    installed = osp.join(_PACKAGE, '.mim')
    if osp.isdir(osp.join(installed, 'configs')):
        return installed
    checkout = osp.dirname(_PACKAGE)
    if osp.isfile(osp.join(checkout, 'model-index.yml')) and osp.isdir(
            osp.join(checkout, 'configs')):
        return checkout
    raise FileNotFoundError(
        f'mmhire at {_PACKAGE} has neither {installed}/configs nor a source checkout around '
        'it: reinstall it with `pip install --no-deps --no-build-isolation <mmhire source>` '
        '(a regular install copies the configs and tools into the package)')


def config_dir() -> str:
    return osp.join(mim_root(), 'configs')


def tool_path(relpath: str) -> str:
    return osp.join(mim_root(), 'tools', relpath)


#: The config folders by kind: the model configs users run (``_base_`` files and the deploy
#: configs left out), and mmdeploy's deploy configs (``configs/deploy/``).
CONFIG_KINDS = ('model', 'deploy')


def _config_root(kind: str) -> str:
    """The folder of mmhire's configs of ``kind``."""
    if kind not in CONFIG_KINDS:
        raise ValueError(f'kind={kind!r}: choose one of {CONFIG_KINDS}')
    return config_dir() if kind == 'model' else osp.join(config_dir(), 'deploy')


def list_configs(kind: str = 'model') -> List[str]:
    """mmhire's configs of ``kind``, relative to their folder: the model configs under
    ``configs/`` (``demo/...`` included), or the deploy configs of ``configs/deploy/``."""
    root = _config_root(kind)
    if kind == 'deploy':
        return sorted(name for name in os.listdir(root) if name.endswith('.py')) \
            if osp.isdir(root) else []
    return sorted(
        osp.relpath(p, root) for p in glob.glob(osp.join(root, '**', '*.py'), recursive=True)
        if '_base_' not in osp.relpath(p, root).split(os.sep)
        and osp.relpath(p, root).split(os.sep)[0] != 'deploy')


def resolve_config(name: str, kind: str = 'model') -> str:
    """A config file: ``name`` itself when it is a file, else mmhire's config of ``kind``
    with that name (``mask_rcnn_hire_s_coco``, ``mask_rcnn_hire_s_coco.py``, ``demo/...``;
    ``segmentation_onnxruntime_static-512x512`` for a deploy config). A name that is neither
    stops with the list of mmhire's configs of that kind."""
    if osp.isfile(name):
        return name
    try:
        known = list_configs(kind)
        root = _config_root(kind)
    except FileNotFoundError:
        known, root = [], None
    wanted = name if name.endswith('.py') else name + '.py'
    for candidate in (wanted, osp.basename(wanted)):
        matches = [c for c in known if c == candidate or osp.basename(c) == candidate]
        if len(matches) == 1:
            return osp.join(root, matches[0])
    what = 'an mmhire config' if kind == 'model' else "one of mmhire's deploy configs"
    listing = '\n  '.join(c[:-3] if kind == 'deploy' else c for c in known) or '(none found)'
    raise FileNotFoundError(
        f'config {name!r} does not exist: it is neither a file nor the name of {what} (no '
        f'file at {osp.abspath(name)}). Pass a config file, or one of these:\n  {listing}')

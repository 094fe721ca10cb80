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


def list_configs() -> List[str]:
    """The model configs users run, relative to the config folder (``_base_`` files and the
    deploy configs of ``deploy/`` left out)."""
    root = config_dir()
    return sorted(
        osp.relpath(p, root) for p in glob.glob(osp.join(root, '**', '*.py'), recursive=True)
        if '_base_' not in osp.relpath(p, root).split(os.sep)
        and osp.relpath(p, root).split(os.sep)[0] != 'deploy')


def resolve_config(name: str) -> str:
    """A config file: ``name`` itself when it is a file, else the mmhire config of that name
    (``mask_rcnn_hire_s_coco``, ``mask_rcnn_hire_s_coco.py`` or ``demo/...``). A name that is
    neither stops with the list of mmhire's configs."""
    if osp.isfile(name):
        return name
    try:
        known = list_configs()
        root = config_dir()
    except FileNotFoundError:
        known, root = [], None
    wanted = name if name.endswith('.py') else name + '.py'
    for candidate in (wanted, osp.basename(wanted)):
        matches = [c for c in known if c == candidate or osp.basename(c) == candidate]
        if len(matches) == 1:
            return osp.join(root, matches[0])
    listing = '\n  '.join(known) if known else '(none found)'
    raise FileNotFoundError(
        f'config {name!r} does not exist: it is neither a file (looked in '
        f'{osp.abspath(name)}) nor the name of an mmhire config. Pass a config file, or one '
        f'of the mmhire configs:\n  {listing}')

"""Checks the installation for what breaks OpenMMLab set-ups most often.

    python -m mmhire.doctor

Prints one line per check, with the fix for each problem, and exits with status 1 when
something is broken (a warning alone leaves it at 0).
"""
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

OK, WARN, FAIL = 'ok', 'warn', 'FAIL'
#: What fixes a broken stack in a user's own environment, by part (the torch stays theirs).
OWN_ENVIRONMENT_FIXES = {
    'torch': 'install torch in this environment: 2.1.2 with the prebuilt mmcv 2.1.0 wheels, or '
             'a newer one with mmcv built from source (docs/install.md)',
    'mmcv': 'build mmcv 2.1.0 with its ops against this torch, in this environment: `pip '
            'download --no-deps --no-binary :all: mmcv==2.1.0`, then `MMCV_WITH_OPS=1 pip '
            'install --no-build-isolation mmcv-2.1.0.tar.gz` (torch >= 2.10 needs its -std=c++17 '
            'raised to c++20 first; docs/install.md)',
    'libraries': 'pip install mmdet==3.3.0 mmsegmentation==1.2.2 mmpretrain==1.2.0 ftfy regex '
                 '(with mmengine 0.10.7 and mmcv 2.1.0, the set CI tests)',
    'mmhire': 'pip install /path/to/mmhire in this environment',
}
LIBRARIES = ('mmdet', 'mmseg', 'mmpretrain')
# Where each library declares the mmcv and mmengine versions it accepts (in its __init__.py).
_RANGE_NAMES = {
    'mmcv': (r'(?:mmcv_minimum_version|MMCV_MIN)', r'(?:mmcv_maximum_version|MMCV_MAX)'),
    'mmengine': (r'(?:mmengine_minimum_version|MMENGINE_MIN)',
                 r'(?:mmengine_maximum_version|MMENGINE_MAX)'),
}
_DISTRIBUTIONS = {'mmdet': 'mmdet', 'mmseg': 'mmsegmentation', 'mmpretrain': 'mmpretrain'}


def checkout_environment() -> Optional[str]:
    """The mmhire checkout whose own environment (``make setup``'s ``.venv``, ``.venv-floor``,
    ``.venv-deploy``) runs this Python, or None for an environment of the user's own."""
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isfile(os.path.join(checkout, 'tools', 'setup_env.sh')):
        return None
    prefix = os.path.abspath(sys.prefix)
    return checkout if prefix.startswith(os.path.join(checkout, '')) else None


def setup_fix(part: str) -> str:
    """The fix for a broken ``part`` (a key of :data:`OWN_ENVIRONMENT_FIXES`): ``make setup``
    in mmhire's own environments, the steps for that part in the user's own."""
    checkout = checkout_environment()
    if checkout is not None:
        return f'run `make setup` (or `bash tools/setup_env.sh`) in {checkout}'
    return OWN_ENVIRONMENT_FIXES[part]


@dataclass
class Finding:
    status: str
    check: str
    detail: str
    fix: str = ''

    def __str__(self) -> str:
        line = f'[{self.status:>4}] {self.check}: {self.detail}'
        return f'{line}\n       fix: {self.fix}' if self.fix else line


def installed_version(distribution: str) -> Optional[str]:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _version_key(version: str) -> Tuple:
    """Orders versions like mmengine's digit_version: 2.0.0rc4 < 2.0.0 < 2.0.1."""
    parts = re.findall(r'\d+|[a-z]+', version.lower())
    key: List = []
    for part in parts:
        if part.isdigit():
            key.append((1, int(part)))
        else:  # a pre-release tag sorts below the release it precedes
            key.append((0, {'a': 0, 'alpha': 0, 'b': 1, 'beta': 1, 'rc': 2}.get(part, -1)))
    return tuple(key + [(0.5, 0)])


def accepted_ranges(library: str) -> dict:
    """The ``{'mmcv': (min, max), 'mmengine': (min, max)}`` a library's ``__init__`` asserts,
    read from its source without importing it (importing fails when they are not met)."""
    spec = importlib.util.find_spec(library)
    if spec is None or spec.origin is None:
        return {}
    with open(spec.origin) as f:
        source = f.read()
    ranges = {}
    for dependency, (low_name, high_name) in _RANGE_NAMES.items():
        low = re.search(low_name + r"\s*=\s*'([^']+)'", source)
        high = re.search(high_name + r"\s*=\s*'([^']+)'", source)
        if low and high:
            ranges[dependency] = (low.group(1), high.group(1))
    return ranges


def torch_version_finding(version: str, detail: str = '') -> Finding:
    """Whether torch ``version`` is inside the range mmhire supports and CI tests."""
    from mmhire.utils.compat import MIN_TORCH, TESTED_TORCH, version_tuple
    minimum, newest = '.'.join(map(str, MIN_TORCH)), TESTED_TORCH[-1]
    text = f'{version}, {detail}' if detail else version
    if version_tuple(version)[:2] < MIN_TORCH:
        return Finding(FAIL, 'torch', f'{text}: older than the oldest supported, {minimum}',
                       f'install torch >= {minimum} with an mmcv built for it (torch 2.1.2 '
                       f'and the prebuilt mmcv 2.1.0 wheels; {setup_fix("torch")})')
    if version_tuple(version) > version_tuple(newest):
        return Finding(WARN, 'torch', f'{text}: newer than the newest torch mmhire was '
                       f'tested with ({newest}); it is expected to work',
                       f'report problems; torch {minimum} to {newest} are tested')
    return Finding(OK, 'torch', f'{text} (supported: {minimum} to {newest} tested)')


def check_setuptools() -> List[Finding]:
    """mmengine resolves ``mmdet::``-style config bases through ``pkg_resources``."""
    try:
        importlib.import_module('pkg_resources')
    except ImportError:
        version = installed_version('setuptools')
        have = f'setuptools {version} has' if version else 'setuptools is not installed, so'
        return [Finding(FAIL, 'pkg_resources', f'{have} no pkg_resources: configs that '
                        f"inherit 'mmdet::', 'mmseg::' or 'mmpretrain::' bases cannot load",
                        "pip install 'setuptools<81'")]
    return [Finding(OK, 'pkg_resources', 'present (mmengine resolves mmdet::/mmseg::/'
                    'mmpretrain:: config bases with it)')]


def check_torch() -> List[Finding]:
    try:
        import torch
    except ImportError as err:
        return [Finding(FAIL, 'torch', f'cannot be imported ({err})', setup_fix('torch'))]
    cuda = torch.version.cuda or 'none (CPU build)'
    found = [torch_version_finding(torch.__version__, f'CUDA {cuda}, '
                                   f'GPU available: {torch.cuda.is_available()}')]
    try:
        import torchvision
        from torchvision.ops import nms
        nms(torch.tensor([[0., 0., 1., 1.]]), torch.tensor([1.]), 0.5)
        found.append(Finding(OK, 'torchvision', torchvision.__version__))
    except Exception as err:  # a torchvision built for another torch fails in its ops
        found.append(Finding(FAIL, 'torchvision', f'does not work with torch '
                             f'{torch.__version__} ({type(err).__name__}: {err})',
                             f'install the torchvision release made for torch '
                             f'{torch.__version__}; {setup_fix("torch")}'))
    return found


def check_mmcv() -> List[Finding]:
    version = installed_version('mmcv')
    if version is None:
        lite = installed_version('mmcv-lite')
        detail = (f'only mmcv-lite {lite} is installed, which has no compiled ops'
                  if lite else 'is not installed')
        return [Finding(FAIL, 'mmcv', detail, setup_fix('mmcv'))]
    try:
        importlib.import_module('mmcv._ext')
    except ModuleNotFoundError:
        return [Finding(FAIL, 'mmcv ops', f'mmcv {version} was built without its compiled ops '
                        f'(MMCV_WITH_OPS=0); RoIAlign, NMS and others are missing',
                        f'pip uninstall mmcv, then {setup_fix("mmcv")}')]
    except ImportError as err:  # undefined symbol: built against another torch
        import torch
        return [Finding(FAIL, 'mmcv ops', f'mmcv {version} was compiled against a different '
                        f'torch than the installed {torch.__version__} ({err})',
                        f'rebuild mmcv for this torch: pip uninstall mmcv, then '
                        f'{setup_fix("mmcv")}')]
    import torch
    from mmcv.ops import RoIAlign, get_compiling_cuda_version, nms
    try:
        nms(torch.tensor([[0., 0., 1., 1.]]), torch.tensor([1.]), 0.5)
        RoIAlign((2, 2), 1.0)(torch.rand(1, 1, 4, 4), torch.tensor([[0., 0., 0., 3., 3.]]))
    except Exception as err:
        return [Finding(FAIL, 'mmcv ops', f'mmcv {version} ops fail to run ({err})',
                        f'rebuild mmcv for this torch: pip uninstall mmcv, then '
                        f'{setup_fix("mmcv")}')]
    compiled_cuda = get_compiling_cuda_version()
    found = [Finding(OK, 'mmcv', f'{version} with compiled ops (CUDA: {compiled_cuda})')]
    if torch.cuda.is_available() and compiled_cuda in ('not available', ''):
        found.append(Finding(WARN, 'mmcv CUDA ops', 'a GPU is available but mmcv was built '
                             'without CUDA, so its ops run on the CPU only',
                             f'rebuild mmcv with FORCE_CUDA=1 on a machine with nvcc: '
                             f'{setup_fix("mmcv")}'))
    elif torch.version.cuda and compiled_cuda not in ('not available', '') and \
            compiled_cuda.split('.')[0] != torch.version.cuda.split('.')[0]:
        found.append(Finding(FAIL, 'mmcv CUDA ops', f'mmcv was compiled with CUDA '
                             f'{compiled_cuda}, torch uses CUDA {torch.version.cuda}',
                             f'rebuild mmcv for this torch: pip uninstall mmcv, then '
                             f'{setup_fix("mmcv")}'))
    return found


def check_versions(version_of: Callable[[str], Optional[str]] = installed_version
                   ) -> List[Finding]:
    found = []
    for library in LIBRARIES:
        version = version_of(_DISTRIBUTIONS[library])
        if version is None:
            found.append(Finding(WARN, library, 'is not installed; its configs cannot run',
                                 setup_fix('libraries')))
            continue
        problems = []
        for dependency, (low, high) in accepted_ranges(library).items():
            have = version_of(dependency)
            if have is None:
                problems.append(f'{dependency} is missing (needs >={low}, <{high})')
            elif not _version_key(low) <= _version_key(have) < _version_key(high):
                problems.append(f'{dependency} {have} is outside >={low}, <{high}')
        if problems:
            found.append(Finding(FAIL, library, f'{version}: ' + '; '.join(problems),
                                 f'install versions inside those ranges: '
                                 f'{setup_fix("libraries")}'))
        else:
            found.append(Finding(OK, library, f'{version}, mmcv and mmengine in its range'))
    return found


def check_registry() -> List[Finding]:
    try:
        from mmengine.registry import MODELS

        import mmhire
    except Exception as err:
        return [Finding(FAIL, 'mmhire', f'cannot be imported ({type(err).__name__}: {err})',
                        setup_fix('mmhire'))]
    scopes = [('mmengine', MODELS)]
    for library in LIBRARIES:
        try:
            scopes.append((library, importlib.import_module(f'{library}.registry').MODELS))
        except Exception:
            continue  # reported by check_versions
    missing = [name for name, registry in scopes if registry.get('HireMLP') is not mmhire.HireMLP]
    if missing:
        return [Finding(FAIL, 'registry', f"'HireMLP' does not resolve in {missing}",
                        "add custom_imports=dict(imports=['mmhire']) to the config and make "
                        "sure `import mmhire` works in this Python")]
    import torch
    with torch.no_grad():
        outs = mmhire.HireMLP('tiny', out_indices=(0, 1, 2, 3)).eval()(torch.rand(1, 3, 64, 64))
    shapes = [tuple(o.shape[1:]) for o in outs]
    return [Finding(OK, 'registry', f"'HireMLP' resolves in {[n for n, _ in scopes]}; "
                    f'a 64x64 forward gives {shapes}')]


def check_checkpoint_loading() -> List[Finding]:
    from mmengine.runner.checkpoint import CheckpointLoader

    from mmhire.utils.checkpoint import load_from_local_weights_only
    if CheckpointLoader._get_checkpoint_loader('model.pth') is not load_from_local_weights_only:
        return [Finding(WARN, 'checkpoint loading', 'mmengine does not use weights-only '
                        'loading for local files in this process',
                        "import mmhire before loading checkpoints (custom_imports)")]
    from mmhire.utils.checkpoint import NATIVE_ALLOW_LIST
    how = ('torch.load(weights_only=True) with an allow-list' if NATIVE_ALLOW_LIST else
           'a restricted unpickler (this torch has no weights-only allow-list)')
    return [Finding(OK, 'checkpoint loading', f'local files load weights-only: {how}')]


CHECKS = (check_torch, check_setuptools, check_mmcv, check_versions, check_registry,
          check_checkpoint_loading)


def run(checks=CHECKS, out=sys.stdout) -> int:
    """Runs the checks, prints their findings and returns the exit status."""
    findings: List[Finding] = []
    for check in checks:
        try:
            results = check()
        except Exception as err:
            results = [Finding(FAIL, check.__name__[len('check_'):],
                               f'the check itself failed ({type(err).__name__}: {err})',
                               setup_fix('mmhire'))]
        for finding in results:
            print(finding, file=out)
        findings += results
    broken = sum(f.status == FAIL for f in findings)
    warned = sum(f.status == WARN for f in findings)
    print(f'{broken} problem(s), {warned} warning(s)', file=out)
    return 1 if broken else 0


if __name__ == '__main__':
    sys.exit(run())

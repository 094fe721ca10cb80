"""Builds a wheelhouse: every package mmhire needs on top of an existing torch, as files that
install with no network.

    python tools/misc/build_wheelhouse.py [--python-version 3.12] [--out wheelhouse]
        [--max-mib 30]

(``make wheelhouse [PYTHON_VERSION=3.12] [WHEELHOUSE=wheelhouse]`` runs it.) The folder holds:

- mmhire's own wheel, built from this tree;
- ``mmcv-2.1.0.tar.gz``, mmcv's source archive, to compile its ops on the GPU node, and the
  ``mmcv-lite`` wheel built from it (mmcv without compiled ops: enough for the backbone and
  classifiers);
- mmengine, mmdet, mmsegmentation, mmpretrain and the packages they pull in, as wheels for
  the chosen Python on x86-64 Linux;
- ``requirements.txt``: the packages to ask for, pinned; ``manifest.json``: every package in
  it, for which Python, and what it expects the node to have.

Left out, because a PyTorch GPU node brings its own: torch, torchvision, triton, the CUDA
wheels and what only they need (sympy, networkx, ...), and the binary scientific stack
(numpy, scipy, matplotlib, Pillow, OpenCV) with what only it needs. Then

    pip install --no-index --find-links wheelhouse -r wheelhouse/requirements.txt

installs mmhire with mmcv-lite and the libraries on a node with no network whose Python has
torch and that stack, OpenCV installed as ``opencv-python`` (mmengine requires that name).
Where OpenCV is another build (``opencv-python-headless``), ``tools/gpu_check.sh`` installs
just the manifest's packages that the node lacks, with ``--no-deps``. Building needs the
network (PyPI or a mirror) and a Python with pip, setuptools >= 77 and torch (mmcv's
``setup.py`` imports it).
"""
import argparse
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, Iterable, List, Set

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MMCV_VERSION = '2.1.0'
#: The downstream libraries at the versions ``tools/setup_env.sh`` installs.
LIBRARIES = ('mmengine==0.10.7', 'mmdet==3.3.0', 'mmsegmentation==1.2.2', 'mmpretrain==1.2.0',
             'ftfy==6.3.1', 'regex>=2022.1')
#: Brought by the node: torch and its own wheels, and the binary scientific stack. Anything
#: that only these need is left out too.
NODE_PROVIDED = ('torch', 'torchvision', 'triton', 'numpy', 'scipy', 'matplotlib',
                 'opencv-python', 'pillow')
NODE_PROVIDED_PREFIXES = ('nvidia-', 'cuda-')
#: x86-64 Linux with glibc 2.28 or newer (pip takes the tags one by one)
PLATFORMS = ('manylinux_2_28_x86_64', 'manylinux_2_27_x86_64', 'manylinux_2_24_x86_64',
             'manylinux_2_17_x86_64', 'manylinux2014_x86_64', 'manylinux2010_x86_64',
             'manylinux1_x86_64')


def canonical(name: str) -> str:
    return re.sub(r'[-_.]+', '-', name).lower()


def provided_by_node(name: str) -> bool:
    name = canonical(name)
    return name in NODE_PROVIDED or name.startswith(NODE_PROVIDED_PREFIXES)


def pip(python: str, *args: str, env: Dict[str, str] = None) -> None:
    subprocess.run([python, '-m', 'pip', '--disable-pip-version-check', *args], check=True,
                   env=env)


def target_options(python_version: str) -> List[str]:
    """pip's options that select wheels for another interpreter than the running one."""
    platforms = [arg for tag in PLATFORMS for arg in ('--platform', tag)]
    return ['--only-binary', ':all:', '--python-version', python_version, '--implementation',
            'cp', *platforms]


def requirement_names(metadata: dict, python_version: str) -> Iterable[str]:
    """The names a package's metadata requires on Linux under ``python_version``."""
    from packaging.requirements import Requirement
    environment = dict(python_version=python_version, python_full_version=python_version + '.0',
                       sys_platform='linux', platform_system='Linux', os_name='posix',
                       platform_machine='x86_64', implementation_name='cpython',
                       platform_python_implementation='CPython', extra='')
    for text in metadata.get('requires_dist') or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            yield canonical(requirement.name)


def needed(report: dict, roots: Iterable[str], python_version: str) -> Set[str]:
    """The packages of pip's resolution that ``roots`` reach without passing through one
    the node provides."""
    graph = {canonical(item['metadata']['name']): item['metadata'] for item in report['install']}
    seen: Set[str] = set()
    stack = [canonical(r) for r in roots]
    while stack:
        name = stack.pop()
        if name in seen or provided_by_node(name) or name not in graph:
            continue
        seen.add(name)
        stack.extend(requirement_names(graph[name], python_version))
    return seen


def build(out: str, python_version: str, max_mib: float, python: str = sys.executable) -> dict:
    work = tempfile.mkdtemp(prefix='wheelhouse-')
    try:
        stage = osp.join(work, 'stage')
        os.makedirs(stage)
        print('[wheelhouse] building mmhire\'s wheel', flush=True)
        # from a copy: a build in the checkout writes build/ there, which another build (a
        # test's, an editable install) may be using
        source = osp.join(work, 'source')
        shutil.copytree(REPO_ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
            '.git', '.venv*', 'build', 'dist', '*.egg-info', '__pycache__', 'work_dirs', 'data',
            'checkpoints', 'wheelhouse*', '.*_cache', '.hypothesis'))
        pip(python, 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', stage, source)
        print(f'[wheelhouse] fetching mmcv {MMCV_VERSION}\'s source and building mmcv-lite '
              'from it', flush=True)
        pip(python, 'download', '--no-deps', '--no-binary', ':all:', '--no-build-isolation',
            '-q', '-d', stage, f'mmcv=={MMCV_VERSION}')
        sdist = osp.join(stage, f'mmcv-{MMCV_VERSION}.tar.gz')
        pip(python, 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', stage, sdist,
            env=dict(os.environ, MMCV_WITH_OPS='0'))
        local = sorted(f for f in os.listdir(stage) if f.endswith('.whl'))
        lite = [f for f in local if f.startswith('mmcv_lite-')]
        if len(lite) != 1 or not lite[0].endswith('-none-any.whl'):
            raise RuntimeError(f'expected one pure mmcv-lite wheel, built {lite}')

        print(f'[wheelhouse] resolving for Python {python_version}', flush=True)
        report_path = osp.join(work, 'report.json')
        pip(python, 'install', '--dry-run', '--ignore-installed', '-q', '--report',
            report_path, '--target', osp.join(work, 'target'), *target_options(python_version),
            *[osp.join(stage, f) for f in local], *LIBRARIES)
        with open(report_path) as f:
            report = json.load(f)
        roots = ['mmhire', 'mmcv-lite', *[canonical(re.split(r'[=<>]', r)[0])
                                          for r in LIBRARIES]]
        keep = needed(report, roots, python_version)
        versions = {canonical(i['metadata']['name']): i['metadata']['version']
                    for i in report['install']}
        fetch = sorted(n for n in keep if n not in ('mmhire', 'mmcv-lite'))
        print(f'[wheelhouse] downloading {len(fetch)} wheels', flush=True)
        pip(python, 'download', '--no-deps', '-q', '-d', stage, *target_options(python_version),
            *[f'{n}=={versions[n]}' for n in fetch])

        files = sorted(os.listdir(stage))
        size = sum(osp.getsize(osp.join(stage, f)) for f in files)
        if size > max_mib * 2**20:
            largest = sorted(files, key=lambda f: -osp.getsize(osp.join(stage, f)))[:5]
            raise RuntimeError(
                f'the wheelhouse would take {size / 2**20:.1f} MiB, over --max-mib {max_mib}; '
                f'largest: {", ".join(largest)}')
        manifest = dict(
            python_version=python_version, platform=PLATFORMS[0], mmcv_source=osp.basename(sdist),
            packages={n: versions[n] for n in sorted(keep)},
            node_provides=list(NODE_PROVIDED) + [p + '*' for p in NODE_PROVIDED_PREFIXES],
            files=files, size_mib=round(size / 2**20, 2))
        with open(osp.join(stage, 'manifest.json'), 'w') as f:
            json.dump(manifest, f, indent=1)
        with open(osp.join(stage, 'requirements.txt'), 'w') as f:
            f.write(f'# mmhire and what it drives, for Python {python_version}: pip install '
                    '--no-index --find-links <this folder> -r <this file>\n')
            f.write(''.join(f'{n}=={versions[n]}\n' for n in roots))
        # in place whole or not at all: a failed build leaves an earlier wheelhouse as it was
        out = osp.abspath(out)
        os.makedirs(osp.dirname(out), exist_ok=True)
        staged = out + '.partial'
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(stage, staged)
        old = out + '.old'
        shutil.rmtree(old, ignore_errors=True)
        if osp.exists(out):
            os.replace(out, old)
        os.replace(staged, out)
        shutil.rmtree(old, ignore_errors=True)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--python-version', default='{}.{}'.format(*sys.version_info[:2]),
                        help='the Python of the node, as 3.12 (default: the running one)')
    parser.add_argument('--out', default=osp.join(REPO_ROOT, 'wheelhouse'))
    parser.add_argument('--max-mib', type=float, default=30.0,
                        help='stop with an error if the wheelhouse would be larger')
    args = parser.parse_args(argv)
    if not re.fullmatch(r'3\.\d+', args.python_version):
        parser.error(f'--python-version {args.python_version!r}: give major.minor, as 3.12')
    try:
        import torch  # noqa: F401  (mmcv's setup.py imports it)
    except ImportError:
        parser.error('building needs torch in this Python (mmcv\'s setup.py imports it): run '
                     'it with the environment of `make setup`, as `make wheelhouse` does')
    try:
        manifest = build(args.out, args.python_version, args.max_mib)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f'[wheelhouse] error: {e}', file=sys.stderr)
        return 1
    print(f'[wheelhouse] {len(manifest["files"])} files, {manifest["size_mib"]} MiB, for '
          f'Python {manifest["python_version"]}, in {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

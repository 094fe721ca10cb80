"""The package sources of pip's configuration, as arguments of ``uv pip install``.

``tools/setup_env.sh`` installs with uv, which reads none of pip's configuration files or
``PIP_*`` variables. A mirror, a local wheel folder or a constraints file that a cluster sets
for pip would be ignored, so this prints pip's settings as uv's options, one argument per
line (``index-url``, ``extra-index-url``, ``find-links``, ``no-index``, ``trusted-host`` and
``constraint``; with more than one index, ``--index-strategy unsafe-best-match``, pip's way of
taking the best version from all of them). ``cert`` and ``proxy``, which uv reads from the
environment, are printed as ``env:NAME=VALUE`` lines.

Usage: python tools/misc/uv_index_args.py   (with the pip of the environment to install into)
"""
import ast
import subprocess
import sys
from typing import Dict, List

#: pip's sections, in the order pip lets them override one another for ``pip install``.
SECTIONS = ('global', 'install', ':env:')
LISTS = ('extra-index-url', 'find-links', 'trusted-host', 'constraint')


def pip_settings(lines: List[str]) -> Dict[str, str]:
    """``pip config list`` output (``section.key='value'`` lines) -> {key: value}, the
    environment over ``install`` over ``global``."""
    ranked = {}
    for line in lines:
        name, sep, value = line.partition('=')
        section, _, key = name.rpartition('.')
        if not sep or section not in SECTIONS:
            continue
        try:
            value = ast.literal_eval(value)
        except (SyntaxError, ValueError):
            continue
        rank = SECTIONS.index(section)
        if key not in ranked or rank >= ranked[key][0]:
            ranked[key] = (rank, str(value))
    return {key: value for key, (_, value) in ranked.items()}


def uv_arguments(settings: Dict[str, str]) -> List[str]:
    args = []
    items = {key: settings[key].split() for key in LISTS if key in settings}
    if settings.get('no-index', '').lower() in ('1', 'true', 'yes', 'on'):
        args.append('--no-index')
    if settings.get('index-url'):
        args += ['--index-url', settings['index-url']]
    for url in items.get('extra-index-url', []):
        args += ['--extra-index-url', url]
    if items.get('extra-index-url'):
        # pip takes the best version from every index; uv's default stops at the first
        # index that has the package at all
        args += ['--index-strategy', 'unsafe-best-match']
    for location in items.get('find-links', []):
        args += ['--find-links', location]
    for host in items.get('trusted-host', []):
        args += ['--allow-insecure-host', host]
    for path in items.get('constraint', []):
        args += ['--constraint', path]
    if settings.get('cert'):
        args.append('env:SSL_CERT_FILE=' + settings['cert'])
    if settings.get('proxy'):
        args += ['env:HTTPS_PROXY=' + settings['proxy'], 'env:HTTP_PROXY=' + settings['proxy']]
    return args


def main() -> int:
    listed = subprocess.run([sys.executable, '-m', 'pip', 'config', 'list'],
                            capture_output=True, text=True)
    if listed.returncode:
        print(f'uv_index_args: pip config list failed: {listed.stderr.strip()}',
              file=sys.stderr)
        return 1
    for arg in uv_arguments(pip_settings(listed.stdout.splitlines())):
        print(arg)
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""tools/misc/uv_index_args.py: pip's package sources handed to uv, which tools/setup_env.sh
installs with and which reads no pip configuration."""
import os
import subprocess
import sys

from conftest import REPO_ROOT, load_tool

tool = load_tool('misc/uv_index_args.py')


def test_the_environment_wins_over_install_over_global():
    settings = tool.pip_settings([
        "global.index-url='https://mirror.example/simple'",
        "install.index-url='https://install.example/simple'",
        ":env:.find-links='/opt/wheels'",
        "global.find-links='/srv/old-wheels'",
        'not a setting',
        "global.trusted-host='mirror.example\\nother.example'",
    ])
    assert settings == {'index-url': 'https://install.example/simple',
                        'find-links': '/opt/wheels',
                        'trusted-host': 'mirror.example\nother.example'}


def test_every_source_becomes_uv_options():
    args = tool.uv_arguments({
        'index-url': 'https://mirror.example/simple',
        'extra-index-url': 'file:///opt/a/simple file:///opt/b/simple',
        'find-links': '/opt/wheels', 'trusted-host': 'mirror.example',
        'constraint': '/etc/pip/constraints.txt', 'cert': '/etc/ssl/ca.crt',
        'proxy': 'http://proxy.example:3128'})
    assert args == ['--index-url', 'https://mirror.example/simple',
                    '--extra-index-url', 'file:///opt/a/simple',
                    '--extra-index-url', 'file:///opt/b/simple',
                    '--index-strategy', 'unsafe-best-match',
                    '--find-links', '/opt/wheels', '--allow-insecure-host', 'mirror.example',
                    '--constraint', '/etc/pip/constraints.txt',
                    'env:SSL_CERT_FILE=/etc/ssl/ca.crt',
                    'env:HTTPS_PROXY=http://proxy.example:3128',
                    'env:HTTP_PROXY=http://proxy.example:3128']
    # one index: uv's own strategy is pip's
    assert tool.uv_arguments({'index-url': 'https://mirror.example/simple'}) == [
        '--index-url', 'https://mirror.example/simple']
    assert tool.uv_arguments({'no-index': 'true', 'find-links': '/w'}) == [
        '--no-index', '--find-links', '/w']
    assert tool.uv_arguments({}) == []


def test_reads_the_pip_configuration_of_its_interpreter(tmp_path):
    """A pip.conf (as a cluster's) and a PIP_ variable, read through pip itself."""
    conf = tmp_path / 'pip.conf'
    conf.write_text('[global]\nindex-url = https://mirror.example/simple\n'
                    'extra-index-url =\n    https://a.example/simple\n'
                    '    https://b.example/simple\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith('PIP_')}
    env.update(PIP_CONFIG_FILE=str(conf), PIP_FIND_LINKS='/opt/wheels')
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'tools', 'misc',
                                                          'uv_index_args.py')],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # what follows, if anything, is this machine's own site-wide pip.conf (a constraint, a cert)
    assert result.stdout.split('\n')[:10] == [
        '--index-url', 'https://mirror.example/simple',
        '--extra-index-url', 'https://a.example/simple',
        '--extra-index-url', 'https://b.example/simple',
        '--index-strategy', 'unsafe-best-match', '--find-links', '/opt/wheels']

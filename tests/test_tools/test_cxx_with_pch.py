"""tools/misc/cxx_with_pch.sh, the compiler front that tools/setup_env.sh uses to compile mmcv:
the header is precompiled once per set of flags, the objects equal those of the plain
compiler, and anything it cannot speed up compiles as without it."""
import os
import shutil
import subprocess

import pytest
from conftest import REPO_ROOT

FRONT = os.path.join(REPO_ROOT, 'tools', 'misc', 'cxx_with_pch.sh')
CXX = shutil.which('g++')
pytestmark = pytest.mark.skipif(CXX is None or shutil.which('flock') is None,
                                reason='needs g++ and flock, which compiling mmcv needs too')

HEADER = '#pragma once\n#include <map>\n#include <string>\n#define SCALE 3\n'
FIRST = '#include "helper.hpp"\nint first(int x) { return SCALE * x; }\n'
# A source whose first include is another header cannot use the precompiled form.
OTHER = ('#include <vector>\n#include "helper.hpp"\n'
         'int other(int x) { return std::vector<int>(SCALE, x).size(); }\n')
MAIN = ('int first(int); int other(int);\n'
        'int main() { return first(2) == 6 && other(1) == 3 ? 0 : 1; }\n')


@pytest.fixture
def project(tmp_path):
    (tmp_path / 'common').mkdir()
    (tmp_path / 'common' / 'helper.hpp').write_text(HEADER)
    for name, text in (('first.cpp', FIRST), ('other.cpp', OTHER), ('main.cpp', MAIN)):
        (tmp_path / name).write_text(text)
    return tmp_path


def compile_all(project, out, env):
    """Compiles the three sources as a build system would (dependency files included), then
    links and runs the program."""
    out.mkdir()
    objects = []
    for name in ('first.cpp', 'other.cpp', 'main.cpp'):
        obj = out / name.replace('.cpp', '.o')
        subprocess.run([FRONT, '-MMD', '-MF', f'{obj}.d', '-O2', '-fPIC', '-Icommon', '-c',
                        name, '-o', str(obj)], cwd=project, env=env, check=True,
                       capture_output=True, text=True)
        objects.append(str(obj))
    program = out / 'program'
    subprocess.run([FRONT, *objects, '-o', str(program)], cwd=project, env=env, check=True)
    assert subprocess.run([str(program)]).returncode == 0
    return objects


def front_env(project):
    return dict(os.environ, MMHIRE_REAL_CXX=CXX, MMHIRE_PCH_DIR=str(project / 'pch'),
                MMHIRE_PCH_HEADER=str(project / 'common' / 'helper.hpp'))


def test_precompiles_once_and_builds_the_same_objects(project):
    plain = compile_all(project, project / 'plain', dict(os.environ, MMHIRE_REAL_CXX=CXX))
    fast = compile_all(project, project / 'fast', front_env(project))
    # one precompiled header for the one set of compile flags
    (gch, ) = list((project / 'pch').glob('*/helper.hpp.gch'))
    assert gch.stat().st_size > 0
    assert not list((project / 'pch').glob('*/*.partial'))
    for a, b in zip(plain, fast):
        code = _code(a)
        assert code and code == _code(b), os.path.basename(a)
    # the dependency files still name the sources' own objects
    assert 'first.o' in open(fast[0] + '.d').read()


def test_used_by_the_compiles_that_include_it_first(project):
    env = front_env(project)
    out = project / 'out'
    out.mkdir()
    for name in ('first.cpp', 'other.cpp'):
        # -H lists the headers read: '!' marks a precompiled header that was used, 'x' one
        # that was found and could not be.
        proc = subprocess.run([FRONT, '-H', '-Winvalid-pch', '-O2', '-Icommon', '-c', name,
                               '-o', str(out / 'x.o')], cwd=project, env=env,
                              capture_output=True, text=True, check=True)
        used = any(line.startswith('! ') and 'helper.hpp.gch' in line
                   for line in proc.stderr.splitlines())
        assert used == (name == 'first.cpp'), proc.stderr[-2000:]


def test_a_header_that_does_not_precompile_leaves_the_plain_compile(project):
    (project / 'common' / 'helper.hpp').write_text(HEADER + 'this is not C++;\n')
    (project / 'ok.cpp').write_text('int ok() { return 1; }\n')
    proc = subprocess.run([FRONT, '-Icommon', '-c', 'ok.cpp', '-o', 'ok.o'], cwd=project,
                          env=front_env(project), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert 'could not precompile helper.hpp; compiling without it' in proc.stderr
    assert list((project / 'pch').glob('*/helper.hpp.gch.failed'))
    # and the next compile does not try again
    again = subprocess.run([FRONT, '-Icommon', '-c', 'ok.cpp', '-o', 'ok.o'], cwd=project,
                           env=front_env(project), capture_output=True, text=True)
    assert again.returncode == 0 and 'could not precompile' not in again.stderr


def test_without_its_settings_it_is_the_plain_compiler(project):
    env = dict(os.environ, MMHIRE_REAL_CXX=CXX)
    version = subprocess.run([FRONT, '--version'], env=env, capture_output=True, text=True,
                             check=True).stdout
    assert version == subprocess.run([CXX, '--version'], capture_output=True, text=True,
                                     check=True).stdout
    compile_all(project, project / 'out', env)
    assert not (project / 'pch').exists()


def _code(obj):
    """An object's disassembled instructions, without the addresses and bytes that name
    where they lie."""
    dump = subprocess.run(['objdump', '-d', obj], capture_output=True,
                          text=True, check=True).stdout
    return [line.split('\t', 2)[-1] for line in dump.splitlines()[3:] if '\t' in line]

"""The README, read as a user reads it: every command it shows names a tool, option, make
target, config or file that exists, the settings it states are the configs' and scripts'
own, and the own-project config it prints is the one the tests train."""
import contextlib
import io
import itertools
import os
import re
import shlex

import pytest
from conftest import CONFIG_DIR, REPO_ROOT, load_tool

from mmhire.__main__ import TOOLS
from mmhire.models.utils import weights

with open(os.path.join(REPO_ROOT, 'README.md')) as f:
    README = f.read()

pytestmark = pytest.mark.floor


def expand(text):
    """`hire_{t,s}_x` -> [`hire_t_x`, `hire_s_x`]."""
    parts = re.split(r'\{([^{}]*,[^{}]*)\}', text)
    choices = [[p] if i % 2 == 0 else p.split(',') for i, p in enumerate(parts)]
    return [''.join(c) for c in itertools.product(*choices)]


def shell_commands():
    """Every command line of the README's bash blocks, continuation lines joined, comments
    and `[optional ...]` parts removed."""
    for block in re.findall(r'```bash\n(.*?)```', README, re.S):
        for line in block.replace('\\\n', ' ').splitlines():
            line = re.sub(r'\s#.*$', '', line).strip()
            if line and not line.startswith('#'):
                yield line


def words_of(line):
    """The words of a command, options inside `[...]` kept, placeholders dropped."""
    line = line.replace('[', ' ').replace(']', ' ').replace('|', ' ')
    return shlex.split(line)


def help_text(parse_args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        parse_args(['--help'])
    return out.getvalue()


def command_help(words):
    """The --help text of the program a command runs, or None if it is not a Python tool."""
    if words[:3] == ['python', '-m', 'mmhire']:
        if words[3] == 'weights':
            return help_text(weights.parse_args)
        assert words[3] in set(TOOLS) | {'configs', 'doctor'}, words
        return None
    script = next((w for w in words if w.startswith('tools/') and w.endswith('.py')), None)
    if words[0] == 'python' and script:
        tool = load_tool(script[len('tools/'):])
        return help_text(getattr(tool, 'parse_args', tool.main))
    return None


def test_every_command_names_what_exists():
    checked = set()
    makefile = open(os.path.join(REPO_ROOT, 'Makefile')).read()
    for line in shell_commands():
        if line.startswith(('sbatch', 'sudo', 'eval', 'pip', 'mim', 'python "$(')):
            continue
        words = words_of(line)
        env = [w for w in itertools.takewhile(lambda w: re.match(r'^[A-Z_]+=', w), words)]
        words = words[len(env):]
        if words[0] == 'make':
            targets = [w for w in words[1:] if '=' not in w]
            for target in targets:
                assert re.search(rf'^{target}:', makefile, re.M), line
            checked.add('make')
            continue
        helptext = command_help(words)
        if helptext is not None:
            for option in (w.split('=')[0] for w in words if w.startswith('--')):
                assert option in helptext, (line, option)
            checked.add('python')
        script = next((w for w in words if w.startswith('tools/') and w.endswith('.sh')), None)
        if script:
            path = os.path.join(REPO_ROOT, script)
            source = open(path).read()
            if 'srun_job.sh' in source:
                source += open(os.path.join(REPO_ROOT, 'tools', 'srun_job.sh')).read()
            for assignment in env:
                assert '${' + assignment.split('=')[0] in source, (line, assignment)
            checked.add('shell')
        for word in words:
            if word.startswith('configs/'):
                assert all(os.path.isfile(os.path.join(REPO_ROOT, p)) for p in expand(word)), \
                    line
    assert checked == {'make', 'python', 'shell'}


def test_every_path_the_readme_names_exists():
    paths = set(re.findall(r'`((?:configs|docs|tools|examples|mmhire)/[^`\s]*)`', README))
    paths |= set(re.findall(r'\]\(((?:docs/)?[A-Za-z_]+\.md|LICENSE)\)', README))
    assert len(paths) > 15
    for path in paths:
        for one in expand(path.rstrip('/')):
            assert os.path.exists(os.path.join(REPO_ROOT, one)), one


def test_slurm_defaults_are_the_scripts():
    script = open(os.path.join(REPO_ROOT, 'tools', 'srun_job.sh')).read()
    for name in ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK'):
        default = re.search(rf'^{name}=\$\{{{name}:-(\d+)\}}', script, re.M).group(1)
        stated = re.search(rf'`{name}` \([^)]*default (\d+)', README).group(1)
        assert stated == default, name


def test_drop_paths_stated_for_other_sizes():
    from mmengine.config import Config
    stated = re.search(r'drop path ([\d./]+) for tiny/small/base in Mask R-CNN 1x and\s+'
                       r'([\d./]+) in\s+UperNet', README)
    for family, values in (('mask_rcnn_hire_{}_coco.py', stated.group(1)),
                           ('upernet_hire_{}_ade20k.py', stated.group(2))):
        for size, value in zip('tsb', values.split('/')):
            cfg = Config.fromfile(os.path.join(CONFIG_DIR, family.format(size)))
            assert cfg.model.backbone.drop_path_rate == float(value), (family, size)


def test_model_table_parameters():
    from mmhire.models import HireMLP
    rows = re.findall(r'\| Hire-MLP-(\w+) +\| `configs/hire_(\w)_in1k.py` \| ([\d.]+) M \|',
                      README)
    assert [r[0] for r in rows] == ['tiny', 'small', 'base', 'large']
    for arch, _, millions in rows:
        backbone = HireMLP(arch=arch)
        width = backbone.channels[-1] if hasattr(backbone, 'channels') else 512
        params = sum(p.numel() for p in backbone.parameters()) + width * 1000 + 1000
        assert round(params / 1e6, 1) == float(millions), (arch, params)


def test_own_project_config_is_the_tested_example():
    """The README's own-project config, comments aside, is examples/own_project's Mask
    R-CNN config, which test_existing_project trains through mmdet's train.py."""
    pytest.importorskip('mmdet')
    from mmengine.config import Config
    block = re.search(r'```python\n(# my_config.py.*?)```', README, re.S).group(1)
    shown = Config.fromstring(block, file_format='.py')
    example = Config.fromfile(os.path.join(REPO_ROOT, 'examples', 'own_project',
                                           'mmdet_mask_rcnn_hire_t.py'))
    assert shown.to_dict() == example.to_dict()

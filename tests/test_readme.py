"""The README and the docs, read as a user reads them: every command they show names a tool,
option, make target, config or file that exists, the settings they state are the configs' and
scripts' own, and the own-project config the README prints is the one the tests train."""
import contextlib
import glob
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
#: The README and every page of docs/, by path relative to the repository.
PAGES = {'README.md': README}
for _page in sorted(glob.glob(os.path.join(REPO_ROOT, 'docs', '*.md'))):
    with open(_page) as f:
        PAGES[os.path.relpath(_page, REPO_ROOT)] = f.read()

pytestmark = pytest.mark.floor


def expand(text):
    """`hire_{t,s}_x` -> [`hire_t_x`, `hire_s_x`]."""
    parts = re.split(r'\{([^{}]*,[^{}]*)\}', text)
    choices = [[p] if i % 2 == 0 else p.split(',') for i, p in enumerate(parts)]
    return [''.join(c) for c in itertools.product(*choices)]


def shell_commands(text=README):
    """Every command line of the bash blocks of ``text``, continuation lines joined,
    comments and `[optional ...]` parts removed."""
    for block in re.findall(r'```bash\n(.*?)```', text, re.S):
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


@pytest.mark.parametrize('page', sorted(PAGES))
def test_every_command_names_what_exists(page):
    checked = set()
    makefile = open(os.path.join(REPO_ROOT, 'Makefile')).read()
    for line in shell_commands(PAGES[page]):
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
    if page == 'README.md':
        assert checked == {'make', 'python', 'shell'}


@pytest.mark.parametrize('page', sorted(PAGES))
def test_every_path_a_page_names_exists(page):
    """Repository paths in backticks, and the pages a page links (relative to its folder)."""
    text = PAGES[page]
    # paths of other projects' files (mmdeploy's own tools/deploy.py) and of an installed
    # package (mmhire/.mim/) are not the checkout's
    paths = {m.group(1) for m in
             re.finditer(r'`((?:configs|docs|tools|examples|mmhire|tests)/[^`\s]*)`', text)
             if 'mmdeploy' not in text[max(0, m.start() - 30):m.start()]
             and not m.group(1).startswith('mmhire/.mim')}
    here = os.path.dirname(page)
    paths |= {os.path.normpath(os.path.join(here, link)) for link in
              re.findall(r'\]\(((?:docs/)?[A-Za-z_]+\.md|LICENSE)(?:#[\w-]+)?\)', text)}
    if page == 'README.md':
        assert len(paths) > 15
    for path in paths:
        for one in expand(path.rstrip('/')):
            assert os.path.exists(os.path.join(REPO_ROOT, one)), (page, one)


def test_docs_index_lists_every_page():
    index = PAGES[os.path.join('docs', 'README.md')]
    pages = [p for p in PAGES if p.startswith('docs') and not p.endswith('README.md')]
    assert len(pages) >= 9
    for page in pages:
        assert f'({os.path.basename(page)})' in index, page


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


def test_data_layout_is_the_configs():
    """Every annotation file and image folder the main configs read is in the README's data
    layout, at the path the config gives it."""
    from mmengine.config import Config
    block = re.search(r'```text\n(data/.*?)```', README, re.S).group(1)
    layout = {line.split()[0].rstrip('/') for line in block.splitlines() if line.strip()}
    found = set()
    for name in ('mask_rcnn_hire_s_coco.py', 'upernet_hire_s_ade20k.py', 'hire_s_in1k.py'):
        cfg = Config.fromfile(os.path.join(CONFIG_DIR, name))
        for loader in ('train_dataloader', 'val_dataloader'):
            dataset = cfg[loader].dataset
            root = dataset.data_root
            paths = [dataset.get('ann_file') or '']
            prefix = dataset.get('data_prefix') or {}
            paths += list(prefix.values()) if isinstance(prefix, dict) else [prefix]
            if dataset.get('split'):  # mmpretrain's ImageNet: <split>/ and meta/<split>.txt
                paths += [dataset.split, f'meta/{dataset.split}.txt']
            for path in filter(None, paths):
                full = os.path.normpath(os.path.join(root, path))
                assert full in layout, (name, loader, full)
                found.add(full)
    assert found == layout

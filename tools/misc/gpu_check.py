"""The GPU check: on a fresh GPU node with no network, install mmhire from a wheelhouse and run
what a GPU user relies on, in one call, within a time budget. ``tools/gpu_check.sh`` runs it;
see there for the usage. Only the standard library is imported here: the node's Python has
torch, and mmhire's packages arrive with the first step.

Steps, each timed, each given what is left of the budget:

1. install: the wheelhouse's packages that the node lacks, into ``OUT_DIR/site`` (``pip
   --target --no-deps --no-index``), leaving the node's torch and everything else alone;
2. tests: ``pytest -m cuda`` (``tests/test_gpu.py`` and the other CUDA tests);
3. benchmark: ``tools/analysis_tools/benchmark.py --device cuda``, the models of HireMLP's
   accuracy at 224 (batch 64 and 128) and a detection size (800x1216, batch 2), bf16 autocast
   and TF32, with ``with_cp``'s memory;
4. mmcv: its ops compiled for the node's GPU from the wheelhouse's source archive;
5. demo: 20 iterations of the demo Mask R-CNN with ``--amp``, then its evaluation.

A step that the time left cannot hold is skipped, and the report says so; ``--steps`` runs
some of them only (a second call for what the first had no time for). ``--dry-run`` runs
every step on the CPU at small sizes; the benchmark then leaves out the compiled model, and
step 4 installs ``--mmcv-wheel`` (a wheel of mmcv with ops for this torch) instead of
compiling, or is skipped with step 5 when none is given.
Writes ``OUT_DIR/report.md`` and ``OUT_DIR/report.json``, plus each step's log.
"""
import argparse
import json
import os
import os.path as osp
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET

from build_wheelhouse import canonical  # the same folder, first on sys.path for a script

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIG = osp.join(REPO_ROOT, 'configs', 'demo', 'mask_rcnn_hire_t_coco_demo.py')
#: What each step needs at least, in seconds, to be started (on one H200).
MIN_SECONDS = dict(install=10, tests=60, benchmark=90, mmcv=180, demo=60)
STEPS = tuple(MIN_SECONDS)
BENCH_MODELS = ('hire_t', 'hire_s', 'hire_b', 'hire_s_compiled', 'convnext_t', 'swin_t',
                'resnet50', 'poolformer_s24')


class Check:

    def __init__(self, args):
        self.args = args
        self.out = osp.abspath(args.out_dir)
        self.python = args.python
        self.start = time.monotonic()
        self.steps = []
        self.site = osp.join(self.out, 'site')
        self.ops_site = osp.join(self.out, 'site-ops')
        with open(osp.join(args.wheelhouse, 'manifest.json')) as f:
            self.manifest = json.load(f)

    # ------------------------------------------------------------------ helpers
    def left(self):
        return self.args.budget - (time.monotonic() - self.start)

    def env(self, ops=False, **extra):
        """The node's environment with the installed packages first on the path, and pip
        kept offline (no config files: a mirror or find-links of this machine's pip.conf
        would hide a package missing from the wheelhouse)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith('PIP_')}
        paths = ([self.ops_site] if ops else []) + [self.site]
        if env.get('PYTHONPATH'):
            paths.append(env['PYTHONPATH'])
        env.update(PYTHONPATH=os.pathsep.join(paths), PIP_CONFIG_FILE=os.devnull,
                   PIP_NO_INDEX='1', PIP_DISABLE_PIP_VERSION_CHECK='1', **extra)
        if self.args.dry_run:
            env['MMHIRE_GPU_CHECK_DRY_RUN'] = '1'
        return env

    def run(self, name, cmd, timeout, cwd=REPO_ROOT, ops=False, **extra):
        """Runs ``cmd`` in :meth:`env`, its output to ``OUT_DIR/<name>.log``; returns (exit
        code or None on timeout, seconds)."""
        log = osp.join(self.out, f'{name}.log')
        began = time.monotonic()
        with open(log, 'a') as f:
            f.write('$ ' + ' '.join(cmd) + '\n')
            f.flush()
            try:
                code = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                                      env=self.env(ops, **extra),
                                      timeout=max(timeout, 1)).returncode
            except subprocess.TimeoutExpired:
                code = None
        return code, time.monotonic() - began

    def step(self, name, function):
        print(f'[gpu_check] {name} ({self.left():.0f} s of the budget left)', flush=True)
        if self.left() < MIN_SECONDS[name] * (0.1 if self.args.dry_run else 1):
            record = dict(step=name, status='skipped',
                          why=f'{self.left():.0f} s of the budget left; it needs about '
                          f'{MIN_SECONDS[name]} s')
        else:
            began = time.monotonic()
            try:
                record = dict(step=name, **function())
            except StepFailed as e:
                record = dict(step=name, status='failed', why=str(e))
            record['seconds'] = round(time.monotonic() - began, 1)
        print(f'[gpu_check] {name}: {record["status"]}'
              + (f' ({record["why"]})' if record.get('why') else ''), flush=True)
        self.steps.append(record)
        return record

    def pip_target(self, log, target, *packages):
        """``pip install --no-index --no-deps --target target packages``: the exit code."""
        return self.run(log, [self.python, '-m', 'pip', 'install', '--no-index', '--no-deps',
                              '--target', target, '--find-links', self.args.wheelhouse, '-q',
                              *packages], self.left())[0]

    def done(self, name):
        return any(s['step'] == name and s['status'] == 'passed' for s in self.steps)

    # ------------------------------------------------------------------ steps
    def install(self):
        manifest = self.manifest
        have = json.loads(self.query(
            'import importlib.metadata as m, json, sys; '
            'print(json.dumps({d.metadata["Name"]: d.version for d in m.distributions()}))'))
        have = {canonical(k): v for k, v in have.items()}
        wanted = {canonical(k): v for k, v in manifest['packages'].items()}
        missing = {k: v for k, v in wanted.items() if k not in have}
        kept = {k: have[k] for k in wanted if k in have}
        os.makedirs(self.site, exist_ok=True)
        if missing:
            code = self.pip_target('install', self.site,
                                   *[f'{k}=={v}' for k, v in sorted(missing.items())])
            if code != 0:
                raise StepFailed(f'pip could not install from {self.args.wheelhouse}: see '
                                 'install.log')
        code, _ = self.run('install', [self.python, '-c', 'import mmhire, mmengine, mmcv, '
                                       'mmdet, mmseg, mmpretrain; print(mmhire.__file__)'],
                           self.left(), cwd=self.out)
        if code != 0:
            raise StepFailed('the installed packages do not import: see install.log')
        return dict(status='passed', installed=missing, node_had=kept,
                    wheelhouse_python=manifest['python_version'])

    def tests(self):
        junit = osp.join(self.out, 'tests.xml')
        # the modules with CUDA tests only: collecting the whole suite would import what only
        # the other tests need (ONNX exporters, OpenVINO), which a GPU node may lack
        files = []
        for root, _, names in os.walk(osp.join(REPO_ROOT, 'tests')):
            for name in sorted(names):
                if name.startswith('test_') and name.endswith('.py'):
                    with open(osp.join(root, name)) as f:
                        if 'pytest.mark.cuda' in f.read():
                            files.append(osp.relpath(osp.join(root, name), REPO_ROOT))
        code, _ = self.run('tests', [self.python, '-m', 'pytest', *sorted(files), '-m', 'cuda',
                                     '-p', 'no:cacheprovider', '-q', '-rs',
                                     f'--junitxml={junit}'], self.left())
        if code is None:
            raise StepFailed('out of time: see tests.log')
        counts, failures = dict(passed=0, failed=0, skipped=0), []
        if osp.exists(junit):
            for case in ET.parse(junit).iter('testcase'):
                name = case.get('classname', '') + '::' + case.get('name', '')
                if case.find('failure') is not None or case.find('error') is not None:
                    counts['failed'] += 1
                    failures.append(name)
                elif case.find('skipped') is not None:
                    counts['skipped'] += 1
                else:
                    counts['passed'] += 1
        status = 'passed' if code == 0 and counts['passed'] else 'failed'
        return dict(status=status, files=sorted(files), **counts, failures=failures,
                    why='' if status == 'passed' else f'pytest exit {code}: see tests.log')

    def bench(self, options, out, timeout):
        """One run of the benchmark tool; its table, or None if it failed or ran out of
        time (the exit code, None for out of time, second)."""
        code, _ = self.run('benchmark', [self.python, 'tools/analysis_tools/benchmark.py',
                                         *options, '--out-dir', out], timeout)
        if code != 0:
            return None, code
        with open(osp.join(out, 'benchmark.md')) as f:
            return f.read(), code

    def benchmark(self):
        out = osp.join(self.out, 'benchmark')
        if self.args.dry_run:
            # no compiled model: inductor takes minutes on a small CPU (tests/test_gpu.py
            # compiles, with dynamo's eager backend in a dry run)
            options = ['--device', 'cpu', '--models', 'hire_t', 'resnet50', '--batch-size', '2',
                       '--sizes', '96', '96@3', '128x160@1', '--modes', 'infer_bf16',
                       'train_bf16', 'infer_fp32', 'train_fp32', '--warmup', '1', '--repeats',
                       '1']
            reserve, why = 0, 'dry run: the compiled model left out'
        else:
            options = ['--device', 'cuda', '--tf32', '--models', *BENCH_MODELS, '--batch-size',
                       '64', '--sizes', '224', '224@128', '800x1216@2', '--modes',
                       'infer_bf16', 'train_bf16', 'infer_fp32', 'train_fp32', '--warmup', '3',
                       '--repeats', '5', '--cp-memory']
            reserve, why = 60, ''
        table, code = self.bench(options, out, self.left() - reserve)
        if table is None:
            raise StepFailed(('out of time' if code is None else f'exit {code}')
                             + ': see benchmark.log')
        if self.args.dry_run:
            return dict(status='passed', table=table, out_dir=out, why=why)
        # Then HireMLP-small compiled beside eager, in a run of its own, so that a compile
        # that outlasts the budget loses only its own rows.
        compiled, code = self.bench(
            ['--device', 'cuda', '--tf32', '--models', 'hire_s', 'hire_s_compiled',
             '--batch-size', '64', '--sizes', '224', '--modes', 'infer_bf16', 'train_bf16',
             '--warmup', '5', '--repeats', '5'],
            osp.join(self.out, 'benchmark-compiled'), self.left())
        if compiled is None:
            why = 'the compiled run ' + ('ran out of time' if code is None else
                                         f'failed (exit {code})') + ': see benchmark.log'
        else:
            table += '\nHireMLP-small compiled, beside eager in the same run:\n\n' + compiled
        return dict(status='passed', table=table, out_dir=out, why=why)

    def mmcv(self):
        if self.args.dry_run:
            if not self.args.mmcv_wheel:
                return dict(status='skipped', why='dry run without --mmcv-wheel: nothing to '
                            'install instead of compiling')
            if self.pip_target('mmcv', self.ops_site, self.args.mmcv_wheel) != 0:
                raise StepFailed(f'could not install {self.args.mmcv_wheel}: see mmcv.log')
            return self.check_ops(compiled=False)
        source = osp.join(self.args.wheelhouse, self.manifest['mmcv_source'])
        build = osp.join(self.out, 'mmcv-build')
        shutil.rmtree(build, ignore_errors=True)
        os.makedirs(build)
        with tarfile.open(source) as tar:
            if hasattr(tarfile, 'data_filter'):
                tar.extractall(build, filter='data')
            else:  # Python < 3.8.17
                tar.extractall(build)
        src = osp.join(build, osp.basename(source)[:-len('.tar.gz')])
        arch = self.query('import torch; print("%d.%d" % torch.cuda.get_device_capability())')
        torch_minor = self.query('import torch; print(".".join(torch.__version__.split(".")'
                                 '[:2]))')
        if tuple(map(int, torch_minor.split('.'))) >= (2, 10):  # its headers need C++20
            setup = osp.join(src, 'setup.py')
            with open(setup) as f:
                text = re.sub(r'-std=c\+\+1[147]', '-std=c++20', f.read())
            with open(setup, 'w') as f:
                f.write(text)
        code, seconds = self.run(
            'mmcv', [self.python, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                     '--no-index', '-w', osp.join(build, 'dist'), src], self.left() - 30,
            MMCV_WITH_OPS='1', FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST=arch,
            MAX_JOBS=str(os.cpu_count() or 1))
        if code != 0:
            raise StepFailed(('out of time' if code is None else f'exit {code}')
                             + ': see mmcv.log')
        wheel = next(f for f in os.listdir(osp.join(build, 'dist')) if f.endswith('.whl'))
        if self.pip_target('mmcv', self.ops_site, osp.join(build, 'dist', wheel)) != 0:
            raise StepFailed('could not install the compiled wheel: see mmcv.log')
        result = self.check_ops(compiled=True)
        result.update(compile_seconds=round(seconds, 1), arch=arch)
        return result

    def check_ops(self, compiled):
        code, _ = self.run('mmcv', [self.python, '-c', 'import mmcv.ops, torch; '
                                    'print(mmcv.ops.get_compiling_cuda_version())'],
                           self.left(), cwd=self.out, ops=True)
        if code != 0:
            raise StepFailed('mmcv.ops does not import: see mmcv.log')
        return dict(status='passed', compiled=compiled)

    def demo(self):
        if not self.done('mmcv'):
            return dict(status='skipped', why="needs mmcv's ops (step mmcv)")
        work = osp.join(self.out, 'demo')
        os.makedirs(work, exist_ok=True)
        code, _ = self.run('demo', [self.python, osp.join(REPO_ROOT, 'tools', 'misc',
                                                          'make_demo_data.py'),
                                    '--root', 'data/demo', '--sets', 'coco'], self.left(),
                           cwd=work, ops=True)
        if code != 0:
            raise StepFailed('could not make the demo data: see demo.log')
        # 20 iterations of the config's 4 images; a dry run makes 2 of 2 images (a CPU's
        # autocast step of 4 took 19 s on an AVX2-only one) and validates on 8 of the demo's
        # 50 validation images
        batch = 2 if self.args.dry_run else 4
        images = batch * (2 if self.args.dry_run else 20)
        dry = [f'train_dataloader.batch_size={batch}', 'val_dataloader.dataset.indices=8'] \
            if self.args.dry_run else []
        code, _ = self.run('demo', [
            self.python, osp.join(REPO_ROOT, 'tools', 'train.py'), DEMO_CONFIG, '--amp',
            '--work-dir', 'work_dir', '--cfg-options', 'train_cfg.max_epochs=1',
            'train_cfg.val_interval=1', f'train_dataloader.dataset.indices={images}', *dry,
            'default_hooks.logger.interval=5'], self.left(), cwd=work, ops=True)
        if code != 0:
            raise StepFailed(('out of time' if code is None else f'exit {code}')
                             + ': see demo.log')
        with open(osp.join(self.out, 'demo.log')) as f:
            log = f.read()
        metrics = dict(re.findall(r'coco/(\w+_mAP(?:_50)?): (-?[\d.]+)', log))
        return dict(status='passed', iterations=images // batch, metrics=metrics)

    # ------------------------------------------------------------------ report
    def query(self, code):
        # from the output folder: a checkout's build metadata must not count as installed
        return subprocess.run([self.python, '-c', code], check=True, capture_output=True,
                              text=True, env=self.env(), cwd=self.out).stdout.strip()

    def machine(self):
        info = json.loads(self.query(
            'import json, sys, torch\n'
            'd = dict(python=sys.version.split()[0], torch=torch.__version__,\n'
            '         cuda=torch.version.cuda, gpu=None)\n'
            'if torch.cuda.is_available():\n'
            '    d["gpu"] = torch.cuda.get_device_name(0)\n'
            'print(json.dumps(d))'))
        try:
            info['driver'] = subprocess.run(
                ['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
                capture_output=True, text=True, timeout=30).stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            info['driver'] = None
        info.update(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
                    dry_run=self.args.dry_run)
        return info

    def report(self, machine):
        lines = ['# mmhire GPU check', '']
        lines.append(('Dry run on the CPU (small sizes). ' if self.args.dry_run else '') +
                     f'GPU: {machine["gpu"] or "none"}, driver {machine["driver"] or "?"}; '
                     f'torch {machine["torch"]}, CUDA {machine["cuda"]}, Python '
                     f'{machine["python"]}, {machine["cores"]} CPU cores. Budget '
                     f'{self.args.budget:.0f} s, used {time.monotonic() - self.start:.0f} s.')
        lines += ['', '| step | status | seconds | notes |', '|---|---|---|---|']
        for s in self.steps:
            notes = s.get('why', '')
            if s['step'] == 'tests' and 'passed' in s:
                notes = f'{s["passed"]} passed, {s["failed"]} failed, {s["skipped"]} skipped'
                if s['failures']:
                    notes += ': ' + ', '.join(s['failures'])
            elif s['step'] == 'install' and s['status'] == 'passed':
                notes = f'{len(s["installed"])} installed, {len(s["node_had"])} kept from ' \
                        'the node'
            elif s['step'] == 'mmcv' and s.get('compile_seconds'):
                notes = f'compiled for sm {s["arch"]} in {s["compile_seconds"]} s'
            elif s['step'] == 'demo' and s.get('metrics'):
                notes = ', '.join(f'{k} {v}' for k, v in s['metrics'].items())
            lines.append(f'| {s["step"]} | {s["status"]} | {s.get("seconds", "")} | {notes} |')
        bench = next((s for s in self.steps if s['step'] == 'benchmark' and 'table' in s),
                     None)
        if bench:
            lines += ['', '## Benchmark', '', bench['table']]
        return '\n'.join(lines) + '\n'


class StepFailed(Exception):
    pass


def main(argv=None):
    parser = argparse.ArgumentParser(prog='tools/gpu_check.sh',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('out_dir', help='where the report, the logs and the installed '
                        'packages go')
    parser.add_argument('--dry-run', action='store_true',
                        help='every step on the CPU at small sizes, without a GPU')
    parser.add_argument('--wheelhouse', default=osp.join(REPO_ROOT, 'wheelhouse'),
                        help='made by `make wheelhouse` (default: wheelhouse/)')
    parser.add_argument('--python', default=sys.executable,
                        help="the node's Python, with torch (default: this one)")
    parser.add_argument('--budget', type=float, default=480,
                        help='seconds for all steps together (default: 480)')
    parser.add_argument('--mmcv-wheel', help='dry run: a wheel of mmcv with ops built for '
                        "this torch, installed in place of step 4's compile")
    parser.add_argument('--steps', default=','.join(STEPS),
                        help=f'the steps to run, comma-separated, of {",".join(STEPS)} (install '
                        'always runs); default: all')
    args = parser.parse_args(argv)
    args.wheelhouse = osp.abspath(args.wheelhouse)
    args.steps = args.steps.split(',')
    unknown = sorted(set(args.steps) - set(STEPS))
    if unknown:
        parser.error(f'--steps: no step {", ".join(unknown)}; choose from {",".join(STEPS)}')
    if not osp.exists(osp.join(args.wheelhouse, 'manifest.json')):
        parser.error(f'no wheelhouse at {args.wheelhouse}: build it where there is network '
                     'with `make wheelhouse PYTHON_VERSION=<the node\'s Python, e.g. 3.12>` '
                     'and bring it along, or pass --wheelhouse')
    check = Check(args)
    probe = subprocess.run([args.python, '-c', 'import sys, torch; '
                            'print(torch.cuda.is_available(), "%d.%d" % sys.version_info[:2])'],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        parser.error(f'{args.python} cannot import torch: run it with the node\'s Python '
                     '(--python), the one that has torch')
    has_gpu, python_version = probe.stdout.split()
    if has_gpu != 'True' and not args.dry_run:
        print('[gpu_check] error: torch sees no CUDA device here. Run it on a GPU node, or '
              'add --dry-run to try every step on the CPU.', file=sys.stderr)
        return 2
    wanted = check.manifest['python_version']
    if wanted != python_version:
        parser.error(f'the wheelhouse is for Python {wanted}, the node runs {python_version}: '
                     f'build it with `make wheelhouse PYTHON_VERSION={python_version}`')
    os.makedirs(check.out, exist_ok=True)
    machine = check.machine()
    check.step('install', check.install)
    if check.done('install'):
        for name in STEPS[1:]:
            if name in args.steps:
                check.step(name, getattr(check, name))
    with open(osp.join(check.out, 'report.json'), 'w') as f:
        json.dump(dict(machine=machine, budget=args.budget, steps=check.steps), f, indent=1)
    with open(osp.join(check.out, 'report.md'), 'w') as f:
        f.write(check.report(machine))
    print(f'[gpu_check] wrote {check.out}/report.md and report.json')
    failed = [s['step'] for s in check.steps if s['status'] == 'failed']
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

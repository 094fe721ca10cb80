"""mmhire's command line, for an installed package as much as for a source checkout:

    python -m mmhire demo [--task det|seg|cls]     the main job on built-in demo data
    python -m mmhire train CONFIG [options]          tools/train.py
    python -m mmhire test CONFIG CHECKPOINT [...]    tools/test.py
    python -m mmhire inference CONFIG CKPT IMAGE --out OUT.png
    python -m mmhire weights {tiny,small,base}       download + convert the released weights
    python -m mmhire convert SRC DST                 released ImageNet weights -> mmhire
    python -m mmhire deploy CONFIG CKPT [...]        mmdeploy: end2end.onnx + meta files
    python -m mmhire make-demo-data [--root DIR]     the built-in demo data sets
    python -m mmhire configs [--paths]               the configs, by name (or file)
    python -m mmhire doctor                          check this environment

CONFIG is a file or the name of an mmhire config (``mask_rcnn_hire_s_coco``). Each command
runs the tool script of the same name (from the package's ``.mim/tools`` when installed), so
``python -m mmhire train ...`` and ``python tools/train.py ...`` are the same program.
"""
import importlib.util
import os
import sys
from typing import List, Optional

TOOLS = {
    'demo': 'run_demo.py',
    'train': 'train.py',
    'test': 'test.py',
    'inference': 'inference.py',
    'convert': 'model_converters/hire_mlp_to_mmhire.py',
    'deploy': 'deployment/deploy.py',
    'make-demo-data': 'misc/make_demo_data.py',
}


def run_tool(relpath: str, argv: List[str]) -> int:
    """Runs ``tools/<relpath>``'s ``main(argv)`` with the program name set to the command."""
    from mmhire.utils.paths import tool_path

    path = tool_path(relpath)
    spec = importlib.util.spec_from_file_location(
        'mmhire_tool_' + relpath.replace('/', '_')[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv) or 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = sorted(list(TOOLS) + ['configs', 'doctor', 'weights'])
    if not argv or argv[0] in ('-h', '--help'):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    prog = f'python -m mmhire {command}'
    if command == 'configs':
        from mmhire.utils.paths import config_dir, list_configs
        if rest not in ([], ['--paths']):
            print(f'error: `configs` takes only --paths, not {" ".join(rest)}', file=sys.stderr)
            return 2
        names = list_configs()
        if rest:
            print('\n'.join(os.path.join(config_dir(), name) for name in names))
        else:
            print('\n'.join(name[:-3] for name in names))
        return 0
    if command == 'doctor':
        from mmhire.doctor import run
        return run()
    if command == 'weights':
        from mmhire.models.utils.weights import main as weights
        return weights(rest)
    if command not in TOOLS:
        print(f'error: unknown command {command!r}; choose one of: {", ".join(commands)} '
              '(python -m mmhire --help)', file=sys.stderr)
        return 2
    saved, sys.argv = sys.argv, [prog] + rest
    try:
        return run_tool(TOOLS[command], rest)
    finally:
        sys.argv = saved


if __name__ == '__main__':
    sys.exit(main())

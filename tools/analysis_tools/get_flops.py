"""Print the parameters and multiply-accumulates (MACs) of a config's model.

    python tools/analysis_tools/get_flops.py configs/hire_t_in1k.py --shape 224 224
"""
import argparse

from mmhire.utils import model_complexity
from mmhire.utils.config import DictAction, build_model, load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Count parameters and MACs of a model')
    parser.add_argument('config', help='config file')
    parser.add_argument('--shape', type=int, nargs='+', default=[224, 224],
                        help='input height and width (one value for a square input)')
    parser.add_argument('--table', action='store_true', help='print the per-module table')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. model.backbone.arch=small')
    args = parser.parse_args(argv)
    if len(args.shape) == 1:
        args.shape = args.shape * 2
    if len(args.shape) != 2 or min(args.shape) <= 0:
        parser.error(f'--shape takes one or two positive ints, got {args.shape}')
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    model = build_model(cfg)
    info = model_complexity(model, tuple(args.shape))
    if args.table:
        print(info['table'])
    h, w = args.shape
    print(f'config: {args.config}')
    print(f'input shape: (3, {h}, {w}); counted: {info["scope"]}')
    print(f'params: {info["params"]:,} ({info["params"] / 1e6:.2f} M)')
    print(f'MACs: {info["macs"]:,} ({info["macs"] / 1e9:.2f} G)')


if __name__ == '__main__':
    main()

"""Evaluate a checkpoint of an mmhire config (mmpretrain, mmdet or mmseg).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
        [--show-dir DIR] [--amp] [--cfg-options k=v ...] [--launcher none|pytorch|slurm]
"""
import argparse
import sys

from mmhire.engine import ConfigError, prepare_test_config, run_loop
from mmhire.utils.config import load_config, parse_runner_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument('--out', help='dump the predictions to this pickle file')
    parser.add_argument('--show-dir', help='draw the predictions on the images into this dir')
    parser.add_argument('--amp', action='store_true', help='run inference in mixed precision')
    return parse_runner_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.cfg_options)
        prepare_test_config(cfg, config_path=args.config, checkpoint=args.checkpoint,
                            work_dir=args.work_dir, out=args.out, show_dir=args.show_dir,
                            amp=args.amp, launcher=args.launcher)
    except (ConfigError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return run_loop(cfg, 'test')


if __name__ == '__main__':
    sys.exit(main())

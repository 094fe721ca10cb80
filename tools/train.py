"""Train an mmhire config (mmpretrain, mmdet or mmseg) with mmengine's Runner.

    python tools/train.py configs/mask_rcnn_hire_s_coco.py [--work-dir DIR] [--resume [CKPT]]
        [--amp] [--auto-scale-lr] [--cfg-options k=v ...] [--launcher none|pytorch|slurm]
"""
import argparse
import sys

from mmhire.engine import ConfigError, prepare_train_config, run_loop
from mmhire.utils.config import load_config, parse_runner_args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp', action='store_true',
        help='mixed precision: float16 with loss scaling on GPUs, bfloat16 on the CPU')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate with the real total batch size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or without a value from the latest checkpoint '
        'in the work dir')
    parser.add_argument(
        '--partial-load', action='store_true',
        help='let load_from load a checkpoint that fits the model only in part (fine-tuning); '
        'without it such a checkpoint stops the run')
    return parse_runner_args(
        parser, argv, cfg_help='override config entries, e.g. train_cfg.max_epochs=2')


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.cfg_options)
        prepare_train_config(cfg, config_path=args.config, work_dir=args.work_dir,
                             resume=args.resume, amp=args.amp,
                             auto_scale_lr=args.auto_scale_lr, launcher=args.launcher,
                             partial_load=args.partial_load)
    except (ConfigError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return run_loop(cfg, 'train')


if __name__ == '__main__':
    sys.exit(main())

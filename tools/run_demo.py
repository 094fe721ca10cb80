"""The main job on built-in demo data (no download): generate the data, evaluate the untrained
model, train it on this machine, evaluate it again, and write predictions.png and
loss_curve.png.

    python tools/run_demo.py                 # Mask R-CNN + Hire-MLP-tiny, COCO metric (main job)
    python tools/run_demo.py --task seg      # UperNet + Hire-MLP-tiny, mIoU
    python tools/run_demo.py --task cls      # Hire-MLP-tiny classifier, top-1
"""
import argparse
import json
import sys

from mmhire.apis.demo import TASKS, run_demo
from mmhire.utils.config import DictAction


def main(argv=None):
    parser = argparse.ArgumentParser(description='Run the demo job on built-in data')
    parser.add_argument('--task', default='det', choices=sorted(TASKS))
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--pictures', type=int, default=4, help='validation images to draw')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override entries of the demo config')
    args = parser.parse_args(argv)
    summary = run_demo(args.task, work_dir=args.work_dir, num_pictures=args.pictures,
                       cfg_options=args.cfg_options)
    print(json.dumps(summary, indent=1))
    print(f'\n{"metric":<22}{"untrained":>12}{"trained":>12}')
    for key, value in summary['trained'].items():
        print(f'{key:<22}{summary["untrained"][key]:>12}{value:>12}')
    print(f'\ntrained in {summary["train_seconds"]} s; pictures: {summary["predictions"]}; '
          f'loss curve: {summary["loss_curve"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

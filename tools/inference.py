"""Run a trained detector, segmentor or classifier on one image and draw its prediction.

    python tools/inference.py CONFIG CHECKPOINT IMAGE --out OUT.png [--score-thr 0.3]
"""
import argparse
import sys

from mmhire.apis import inference_and_draw
from mmhire.engine import ConfigError


def main(argv=None):
    parser = argparse.ArgumentParser(description='Draw a model prediction on an image')
    parser.add_argument('config', help='mmdet, mmseg or mmpretrain config of the model')
    parser.add_argument('checkpoint', help='trained checkpoint')
    parser.add_argument('image', help='input image')
    parser.add_argument('--out', required=True, help='output picture (.png or .jpg)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='do not draw detections scoring below this')
    parser.add_argument('--device', default='cpu', help='e.g. cpu or cuda:0')
    args = parser.parse_args(argv)
    try:
        summary = inference_and_draw(args.config, args.checkpoint, args.image, args.out,
                                     score_thr=args.score_thr, device=args.device)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(f'{summary} -> {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

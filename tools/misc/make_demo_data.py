"""Generate the built-in demo data sets (no download): COCO-format instance segmentation,
ADE20K-layout semantic segmentation and ImageNet-layout classification, under data/demo.

    python tools/misc/make_demo_data.py [--root data/demo] [--sets coco ade imagenet]
"""
import argparse
import json

from mmhire.datasets import make_demo_data


def main(argv=None):
    parser = argparse.ArgumentParser(description='Generate the demo data sets')
    parser.add_argument('--root', default='data/demo', help='output folder')
    parser.add_argument('--sets', nargs='+', default=['coco', 'ade', 'imagenet'],
                        choices=['coco', 'ade', 'imagenet'], help='which sets to write')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    counts = make_demo_data(args.root, args.sets, args.seed)
    print(json.dumps(dict(root=args.root, **counts), indent=1))


if __name__ == '__main__':
    main()

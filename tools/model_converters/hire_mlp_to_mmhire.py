"""Convert a released Hire-MLP ImageNet checkpoint into an mmpretrain/mmhire checkpoint.

    python tools/model_converters/hire_mlp_to_mmhire.py hire_mlp_tiny.pth \
        checkpoints/hire_t_in1k.pth

The result loads with ``configs/hire_t_in1k.py`` (``load_from`` or ``tools/test.py``) and, as a
backbone initialisation, with ``init_cfg=dict(type='Pretrained', checkpoint=DST,
prefix='backbone.')`` in detection and segmentation configs.

The source may be a bare state dict (keys maybe prefixed with ``module.``) or the file the
release's DeiT-style training script saves: ``model``, ``model_ema``, ``optimizer``,
``lr_scheduler``, ``epoch``, ``scaler`` and ``args``. It is loaded weights-only, with
``argparse.Namespace`` (the ``args`` entry) the one type allowed beyond tensors and plain
containers.
"""
import argparse
import sys

from mmhire.models.utils import convert_hire_mlp, extract_state_dict
from mmhire.utils import safe_load, save_checkpoint_atomic


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='released checkpoint (hire_mlp_{tiny,small,base}.pth)')
    parser.add_argument('dst', help='where to write the converted checkpoint')
    parser.add_argument('--use-ema', action='store_true',
                        help='convert the model_ema weights instead of model')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        checkpoint = safe_load(args.src, allowed=[argparse.Namespace])
        state_dict = convert_hire_mlp(extract_state_dict(checkpoint, args.use_ema))
    except (OSError, RuntimeError, KeyError, TypeError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    save_checkpoint_atomic(
        dict(meta=dict(source=args.src, converter='mmhire.hire_mlp_to_mmhire',
                       ema=bool(args.use_ema)),
             state_dict=state_dict), args.dst)
    print(f'converted {len(state_dict)} tensors from {args.src} to {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

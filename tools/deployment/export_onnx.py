"""Export HireMLP to ONNX once, for every input size, and check it in onnxruntime.

    python tools/deployment/export_onnx.py --arch small --out hire_s.onnx \
        [--checkpoint checkpoints/hire_s_in1k.pth] [--classifier | --segmentor CONFIG] \
        [--shape 224 224] \
        [--exporter torchscript|dynamo] [--opset N] [--batch 1] \
        [--check-sizes 224x224 33x47 800x1216 ...] [--no-check]

The backbone is exported in its deploy form (BatchNorm folded into the convolutions) with all
four stage outputs (``out0`` .. ``out3``); with ``--classifier``, the whole ImageNet
classifier of mmhire's ``hire_<arch>_in1k`` config (backbone, pooling, head) with one output,
``scores``; with ``--segmentor CONFIG``, the whole mmseg segmentor of that config (UperNet,
Semantic FPN, ...; its arch, not ``--arch``) with one output, ``classes``, the class of every
pixel at the input's size. Batch, height and width of the input are dynamic: the file serves
every size of at least 32x32, whatever ``--shape`` the example input had. Unless
``--no-check`` is given, the file runs in onnxruntime at the sizes of ``--check-sizes`` (by
default small, odd, square, elongated and large ones) and its outputs must equal PyTorch's
within ``--tolerance`` (max abs difference relative to the largest value of each output;
for a segmentor, the share of pixels whose class differs).

This runs on every supported torch, the newest included, where mmdeploy cannot:
``tools/deployment/deploy.py`` (mmdeploy) exports detectors and writes mmdeploy's meta files.
"""
import argparse
import sys

import torch

from mmhire.deployment.export import parse_size

DEFAULT_CHECK_SIZES = ('32x32', '33x47', '224x224', '193x257', '97x311', '511x511',
                       '800x1216')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', default='tiny', help='tiny, small, base or large')
    parser.add_argument('--checkpoint', help='a converted classifier or backbone checkpoint')
    parser.add_argument('--classifier', action='store_true',
                        help='export the whole classifier (class scores), not the backbone')
    parser.add_argument('--segmentor', metavar='CONFIG',
                        help='export the whole segmentor of this mmseg config (class map)')
    parser.add_argument('--shape', type=int, nargs=2, default=[224, 224], metavar=('H', 'W'),
                        help='size of the example input the graph is traced with')
    parser.add_argument('--batch', type=int, default=1, help='batch size of the example input')
    parser.add_argument('--exporter', default='torchscript', choices=('torchscript', 'dynamo'),
                        help='torch.onnx.export(dynamo=False) or the dynamo exporter '
                        '(torch >= 2.6 with onnxscript)')
    parser.add_argument('--opset', type=int,
                        help='ONNX opset; default 17 (torchscript) or 18 (dynamo)')
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--check-sizes', type=parse_size, nargs='+',
                        default=[parse_size(s) for s in DEFAULT_CHECK_SIZES], metavar='HxW',
                        help='sizes the file is run at against PyTorch')
    parser.add_argument('--no-check', action='store_true', help='skip the onnxruntime check')
    parser.add_argument('--tolerance', type=float, default=1e-4)
    args = parser.parse_args(argv)
    from mmhire.models.backbones.hire_mlp import MIN_INPUT_SIZE, sizes_below_minimum
    small = sizes_below_minimum([tuple(args.shape)] + args.check_sizes)
    if small:
        parser.error(f'sizes below {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels, the smallest '
                     f'input HireMLP takes: {", ".join(small)}')
    if args.batch < 1:
        parser.error('--batch must be at least 1')
    if args.classifier and args.segmentor:
        parser.error('--classifier and --segmentor exclude each other')
    return args


def build_backbone(arch: str, checkpoint=None) -> torch.nn.Module:
    from mmhire.models import HireMLP
    init_cfg = None
    if checkpoint:
        from mmhire.utils import safe_load
        keys = safe_load(checkpoint).get('state_dict', {})
        prefix = 'backbone.' if any(k.startswith('backbone.') for k in keys) else None
        init_cfg = dict(type='Pretrained', checkpoint=checkpoint, prefix=prefix)
    model = HireMLP(arch, out_indices=(0, 1, 2, 3), init_cfg=init_cfg)
    model.init_weights()
    return model.eval().switch_to_deploy()


def build_classifier(arch: str, checkpoint=None) -> torch.nn.Module:
    """mmhire's ``hire_<a>_in1k`` classifier, its backbone in deploy form."""
    import mmpretrain.models  # noqa: F401  (registers the classifier parts)
    from mmengine.runner import load_checkpoint

    from mmhire.deployment.export import ClassifierScores
    from mmhire.models import HireMLP
    from mmhire.utils.config import build_model, load_config
    if arch.lower() not in HireMLP.arch_zoo:
        raise ValueError(f'unknown arch {arch!r}; choose one of {sorted(HireMLP.arch_zoo)}')
    cfg = load_config(f'hire_{arch.lower()[0]}_in1k')
    cfg.model.backbone.init_cfg = None
    cfg.model.pop('data_preprocessor', None)
    # in the config's own scope, whatever scope the process set before (an mmseg model)
    model = build_model(cfg)
    model.init_weights()
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    model.eval()
    model.backbone.switch_to_deploy()
    return ClassifierScores(model)


def build_segmentor(config: str, checkpoint=None) -> torch.nn.Module:
    """The mmseg segmentor of ``config`` as a class-map module, its backbone in deploy form."""
    from mmengine.runner import load_checkpoint

    from mmhire.deployment.export import SegmentorClassMap
    from mmhire.utils.config import build_model, load_config, model_library
    cfg = load_config(config)
    if model_library(cfg) != 'mmseg':
        raise ValueError(f'{config} is not an mmseg config (default_scope '
                         f'{model_library(cfg)!r}); --segmentor takes a segmentor config')
    cfg.model.backbone.init_cfg = None  # random weights, or the checkpoint's
    model = build_model(cfg)
    model.init_weights()
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    model.eval()
    if hasattr(model.backbone, 'switch_to_deploy'):
        model.backbone.switch_to_deploy()
    return SegmentorClassMap(model)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmhire.deployment.export import check_sizes, export_onnx, onnx_opset
    try:
        if args.segmentor:
            model = build_segmentor(args.segmentor, args.checkpoint)
        else:
            build = build_classifier if args.classifier else build_backbone
            model = build(args.arch, args.checkpoint)
        x = torch.randn(args.batch, 3, *args.shape)
        export_onnx(model, x, args.out, args.opset, args.exporter)
    except (ValueError, TypeError, RuntimeError, FileNotFoundError, KeyError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    what = ('segmentor' if args.segmentor else
            'classifier' if args.classifier else 'backbone')
    opset = onnx_opset(args.out)
    name = args.segmentor if args.segmentor else f'HireMLP-{args.arch}'
    print(f'wrote {args.out} ({name} {what}, {args.exporter} exporter, opset '
          f'{opset}, traced at {args.shape[0]}x{args.shape[1]}; dynamic batch, height '
          f'and width)')
    if args.no_check:
        return 0
    # a different batch than the example, to exercise the dynamic batch axis too
    results = check_sizes(model, args.out, args.check_sizes, batch=args.batch + 1)
    worst = 0.
    for (height, width), error in results:
        measure = ('share of pixels with another class' if args.segmentor else
                   'max relative difference')
        print(f'onnxruntime vs PyTorch at {height}x{width}: {measure} {error:.2e}')
        worst = max(worst, error)
    print(f'worst: {worst:.2e} (tolerance {args.tolerance:.0e})')
    if worst > args.tolerance:
        print(f'error: the exported model does not match PyTorch; {args.out} is kept for '
              f'inspection', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

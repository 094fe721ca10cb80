"""Export HireMLP to ONNX once, for every input size, and check it in onnxruntime.

    python tools/deployment/export_onnx.py --arch small --out hire_s.onnx \
        [--checkpoint checkpoints/hire_s_in1k.pth] [--classifier [CONFIG] | --segmentor CONFIG] \
        [--logits] [--normalize-in-graph] [--shape 224 224] \
        [--exporter torchscript|dynamo] [--opset N] [--batch 1] \
        [--check-sizes 224x224 33x47 800x1216 ...] [--no-check]

The backbone is exported in its deploy form (BatchNorm folded into the convolutions) with all
four stage outputs (``out0`` .. ``out3``); with ``--classifier CONFIG``, the whole
mmpretrain classifier of that config (backbone, neck, head: a fine-tuned one, any number of
classes; without CONFIG, mmhire's ``hire_<arch>_in1k``) with one output, ``scores``, the class
probabilities (softmax, as mmpretrain's ``pred_score`` and mmdeploy's classifiers give); with
``--segmentor CONFIG``, the whole mmseg segmentor of that config (UperNet, Semantic FPN, ...;
its arch, not ``--arch``) with one output, ``classes``, the class of every pixel at the
input's size, or with ``--logits`` one output ``logits``, the class scores of every pixel,
which a server resizes to the image's size before taking the best class, as mmseg does.

Every file states its input contract (channel order, mean, std, padding multiple, the test
pipeline; ``mmhire.deployment.contract``) in its metadata; with ``--normalize-in-graph`` the
graph takes 0-255 pixel values and normalises them itself. Batch, height and width of the
input are dynamic: the file serves every size of at least 32x32, whatever ``--shape`` the
example input had. Unless ``--no-check`` is given, the file runs in onnxruntime at the sizes
of ``--check-sizes`` (by default small, odd, square, elongated and large ones) and its
outputs must equal PyTorch's within ``--tolerance`` (max abs difference relative to the
largest value of each output; for a class map, the share of pixels whose class differs).

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
    parser.add_argument('--classifier', nargs='?', const='', metavar='CONFIG',
                        help='export the whole classifier of this mmpretrain config (class '
                        'probabilities); without CONFIG, mmhire\'s hire_<arch>_in1k')
    parser.add_argument('--segmentor', metavar='CONFIG',
                        help='export the whole segmentor of this mmseg config (class map)')
    parser.add_argument('--logits', action='store_true',
                        help='with --segmentor: output the class scores of every pixel '
                        '(logits), not the class map')
    parser.add_argument('--normalize-in-graph', action='store_true',
                        help='the graph takes 0-255 pixel values and subtracts the mean and '
                        'divides by the std of the config\'s data preprocessor itself')
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
    if args.classifier is not None and args.segmentor:
        parser.error('--classifier and --segmentor exclude each other')
    if args.logits and not args.segmentor:
        parser.error('--logits goes with --segmentor CONFIG')
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


def arch_config(arch: str) -> str:
    """mmhire's ImageNet config of ``arch`` (``hire_s_in1k`` for small)."""
    from mmhire.models import HireMLP
    if arch.lower() not in HireMLP.arch_zoo:
        raise ValueError(f'unknown arch {arch!r}; choose one of {sorted(HireMLP.arch_zoo)}')
    return f'hire_{arch.lower()[0]}_in1k'


def load_library_config(config: str, library: str, option: str):
    """The config ``config``, refused unless its models are ``library``'s."""
    from mmhire.utils.config import load_config, model_library
    cfg = load_config(config)
    if model_library(cfg) != library:
        raise ValueError(f'{config} is not an {library} config (default_scope '
                         f'{model_library(cfg)!r}); {option} takes a config of {library}')
    if 'model' not in cfg:
        raise ValueError(f'{config} has no `model`; {option} takes a model config')
    return cfg


def build_whole_model(cfg, checkpoint=None) -> torch.nn.Module:
    """The model of ``cfg`` in eval mode with the checkpoint's weights (all of them, or it
    stops) or random ones, its backbone in deploy form."""
    from mmengine.runner import load_checkpoint

    from mmhire.utils.config import build_model
    cfg.model.backbone.init_cfg = None  # random weights, or the checkpoint's
    cfg.model.pop('data_preprocessor', None)
    # in the config's own scope, whatever scope the process set before
    model = build_model(cfg)
    model.init_weights()
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    model.eval()
    if hasattr(model.backbone, 'switch_to_deploy'):
        model.backbone.switch_to_deploy()
    return model


def build_classifier(config: str, checkpoint=None) -> torch.nn.Module:
    """The mmpretrain classifier of ``config`` as a class-probabilities module."""
    import mmpretrain.models  # noqa: F401  (registers the classifier parts)

    from mmhire.deployment.export import ClassifierScores
    cfg = load_library_config(config, 'mmpretrain', '--classifier')
    return ClassifierScores(build_whole_model(cfg, checkpoint))


def build_segmentor(config: str, checkpoint=None, logits: bool = False) -> torch.nn.Module:
    """The mmseg segmentor of ``config`` as a class-map (or class-scores) module, its
    backbone in deploy form."""
    from mmhire.deployment.export import SegmentorClassMap
    cfg = load_library_config(config, 'mmseg', '--segmentor')
    return SegmentorClassMap(build_whole_model(cfg, checkpoint), logits)


def contract_for(args):
    """The input contract of what ``args`` export (``mmhire.deployment.contract``)."""
    from mmhire.deployment.contract import input_contract
    from mmhire.utils.config import load_config
    if args.segmentor:
        config, library = args.segmentor, 'mmseg'
        task = 'segmentation-logits' if args.logits else 'segmentation'
    else:
        config = args.classifier or arch_config(args.arch)
        library = 'mmpretrain'
        task = 'backbone' if args.classifier is None else 'classification'
    return input_contract(load_config(config), library, task, args.normalize_in_graph,
                          args.checkpoint)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmhire.deployment.export import (
        NormalizeInGraph,
        check_sizes,
        export_onnx,
        onnx_opset,
    )
    try:
        if args.segmentor:
            model = build_segmentor(args.segmentor, args.checkpoint, args.logits)
        elif args.classifier is not None:
            model = build_classifier(args.classifier or arch_config(args.arch),
                                     args.checkpoint)
        else:
            model = build_backbone(args.arch, args.checkpoint)
        contract = contract_for(args)
        if args.normalize_in_graph:
            model = NormalizeInGraph(model, contract['input']['mean'],
                                     contract['input']['std'])
        x = torch.randn(args.batch, 3, *args.shape)
        # the file appears complete, its contract included, or not at all
        export_onnx(model, x, args.out, args.opset, args.exporter, contract)
    except (ValueError, TypeError, RuntimeError, FileNotFoundError, KeyError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    what = ('segmentor' if args.segmentor else
            'classifier' if args.classifier is not None else 'backbone')
    opset = onnx_opset(args.out)
    name = (args.segmentor or args.classifier or f'HireMLP-{args.arch}')
    pixels = contract['input']
    print(f'wrote {args.out} ({name} {what}, {args.exporter} exporter, opset '
          f'{opset}, traced at {args.shape[0]}x{args.shape[1]}; dynamic batch, height '
          f'and width)')
    print(f'input contract: {pixels["channel_order"]} float32 NCHW, '
          + ('0-255 values (normalised in the graph)' if pixels['normalized_in_graph'] else
             f'(pixel - mean) / std with mean {pixels["mean"]}, std {pixels["std"]}')
          + (f', padded to a multiple of {pixels["size_divisor"]}'
             if pixels['size_divisor'] > 1 else '')
          + f'; stored in the file\'s metadata ({len(contract["test_pipeline"])} test '
          'pipeline steps included)')
    if args.no_check:
        return 0
    # a different batch than the example, to exercise the dynamic batch axis too
    results = check_sizes(model, args.out, args.check_sizes, batch=args.batch + 1)
    worst = 0.
    for (height, width), error in results:
        measure = ('share of pixels with another class'
                   if args.segmentor and not args.logits else
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

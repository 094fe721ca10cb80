"""Export the HireMLP backbone to ONNX and check it in onnxruntime.

    python tools/deployment/export_onnx.py --arch small --shape 224 224 --out hire_s.onnx \
        [--checkpoint checkpoints/hire_s_in1k.pth] [--opset 17] [--batch 1]

The backbone is exported in its deploy form (BatchNorm folded into the convolutions) with all
four stage outputs (``out0`` .. ``out3``), for one input size: the shift, pad and fold indices
depend on it, so export once per size you serve; the batch dimension is dynamic. Unless
``--no-check`` is given, the exported model runs in onnxruntime on a random input and its
outputs must equal PyTorch's within ``--tolerance`` (max abs difference relative to the
largest value).
"""
import argparse
import inspect
import os
import sys

import torch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', default='tiny', help='tiny, small, base or large')
    parser.add_argument('--checkpoint', help='a converted classifier or backbone checkpoint')
    parser.add_argument('--shape', type=int, nargs=2, default=[224, 224], metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1, help='batch size of the example input')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--no-check', action='store_true', help='skip the onnxruntime check')
    parser.add_argument('--tolerance', type=float, default=1e-4)
    return parser.parse_args(argv)


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


def export(model: torch.nn.Module, x: torch.Tensor, path: str, opset: int) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    names = [f'out{i}' for i in range(len(model.out_indices))]
    # The TorchScript exporter; torch >= 2.5 also has the dynamo one, chosen by `dynamo`.
    legacy = ({'dynamo': False}
              if 'dynamo' in inspect.signature(torch.onnx.export).parameters else {})
    torch.onnx.export(
        model, (x, ), path, opset_version=opset, input_names=['input'], output_names=names,
        dynamic_axes={'input': {0: 'batch'}, **{n: {0: 'batch'} for n in names}}, **legacy)


def check(model: torch.nn.Module, path: str, x: torch.Tensor) -> float:
    """Largest output difference between onnxruntime and PyTorch, relative to the largest
    output value."""
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    got = session.run(None, {'input': x.numpy()})
    with torch.no_grad():
        expected = model(x)
    return max(float((torch.from_numpy(g) - e).abs().max() / e.abs().max())
               for g, e in zip(got, expected))


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        model = build_backbone(args.arch, args.checkpoint)
    except (ValueError, TypeError, RuntimeError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    x = torch.randn(args.batch, 3, *args.shape)
    with torch.no_grad():
        model(x)  # raises a clear error for a size HireMLP does not take
    export(model, x, args.out, args.opset)
    print(f'wrote {args.out} (opset {args.opset}, input {tuple(x.shape[1:])}, dynamic batch)')
    if args.no_check:
        return 0
    # a different batch size than the export example, to exercise the dynamic batch axis
    probe = torch.randn(args.batch + 1, 3, *args.shape)
    error = check(model, args.out, probe)
    print(f'onnxruntime vs PyTorch: max relative difference {error:.2e} '
          f'(tolerance {args.tolerance:.0e})')
    if error > args.tolerance:
        print('error: the exported model does not match PyTorch', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

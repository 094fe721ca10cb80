"""Deploy an mmhire model with mmdeploy: ONNX Runtime's end2end.onnx and mmdeploy's meta files.

    python tools/deployment/deploy.py CONFIG CHECKPOINT [--deploy-cfg NAME_OR_FILE] \
        [--work-dir DIR] [--img IMAGE] [--check-sizes HxW ...] [--no-check]
    python -m mmhire deploy ...          (the same program)
    python tools/deployment/deploy.py --list-deploy-cfgs

CONFIG is an mmpretrain classifier, mmseg segmentor or mmdet (Cascade) Mask R-CNN config with
a HireMLP backbone: one of mmhire's (by file or name) or your own. The deploy config defaults
to the dynamic ONNX Runtime one of the model's library (configs/deploy/); the static ones
serve one size. The work dir (default work_dirs/deploy/<config name>) receives end2end.onnx,
deploy.json, pipeline.json and detail.json, all at once: a failed deployment writes nothing
there. mmdeploy runs on the torch 2.1 stack: `make setup-deploy`, then run this with
.venv-deploy/bin/python.

Unless --no-check is given, the deployed model is then run beside the PyTorch model at the
--check-sizes (the static deploy configs: at their size): class scores
must agree within 1e-4 (relative), class maps on 99.9% of pixels, and the ten best detections
must be found again (same label, box IoU >= 0.99, score within 1e-3, masks agreeing on 99% of
the pixels). Detectors are fed images resized to those sizes (rounded up to the
preprocessor's padding multiple) so that nothing is padded: the deployed detector takes the padding
of a padded input for image, which mmdeploy's detectors do whatever the backbone.
"""
import argparse
import os.path as osp
import sys

from mmhire.deployment.export import parse_size

DEFAULT_CHECK_SIZES = ('224x224', '96x160', '257x193')
TOLERANCE = dict(scores=1e-4, pixels=0.999, iou=0.99, score=1e-3, mask=0.99)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', nargs='?', help='model config file or mmhire config name')
    parser.add_argument('checkpoint', nargs='?', help='the trained checkpoint (.pth)')
    parser.add_argument('--deploy-cfg', help='deploy config: a file or the name of one of '
                        'mmhire\'s (--list-deploy-cfgs); default: the dynamic ONNX Runtime '
                        'config of the model\'s library')
    parser.add_argument('--work-dir', help='where the files go (default '
                        'work_dirs/deploy/<config name>)')
    parser.add_argument('--img', help='image to trace with (default: a random image)')
    parser.add_argument('--device', default='cpu', help='device to export on')
    parser.add_argument('--check-sizes', type=parse_size, nargs='+', metavar='HxW',
                        default=[parse_size(s) for s in DEFAULT_CHECK_SIZES],
                        help='input sizes the deployed model is compared with PyTorch at')
    parser.add_argument('--no-check', action='store_true',
                        help='skip the comparison with PyTorch')
    parser.add_argument('--list-deploy-cfgs', action='store_true',
                        help='print mmhire\'s deploy configs and exit')
    args = parser.parse_args(argv)
    if not args.list_deploy_cfgs and not (args.config and args.checkpoint):
        parser.error('CONFIG and CHECKPOINT are required')
    from mmhire.models.backbones.hire_mlp import MIN_INPUT_SIZE, sizes_below_minimum
    small = sizes_below_minimum(args.check_sizes)
    if small:
        parser.error(f'--check-sizes below {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels, the '
                     f'smallest input HireMLP takes: {", ".join(small)}')
    return args


def check(model_cfg, deploy_cfg, checkpoint, onnx_path, sizes) -> bool:
    """Runs the deployed model beside PyTorch and prints what it finds; True when it agrees
    everywhere within :data:`TOLERANCE`."""
    import numpy as np

    from mmhire.deployment.check import (
        DeployedPair,
        classifier_agreement,
        match_detections,
        segmentor_agreement,
    )
    from mmhire.utils.config import model_library

    library = model_library(model_cfg)
    static = deploy_cfg.onnx_config.get('input_shape')
    if static:
        sizes = [(static[1], static[0])]
    if library == 'mmdet':
        # resized to exactly these sizes, multiples of the preprocessor's padding, so that
        # no padding is added
        divisor = model_cfg.model.data_preprocessor.get('pad_size_divisor', 1)
        sizes = [(-(-h // divisor) * divisor, -(-w // divisor) * divisor) for h, w in sizes]
    pair = DeployedPair(model_cfg, deploy_cfg, checkpoint, onnx_path)
    ok = True
    if library == 'mmpretrain':
        for (h, w), diff in classifier_agreement(pair.torch_model, onnx_path, sizes,
                                                 deploy_cfg=deploy_cfg):
            good = diff <= TOLERANCE['scores']
            ok &= good
            print(f'{h}x{w}: class scores differ by {diff:.1e} (relative) '
                  f'{"ok" if good else "TOO MUCH"}')
    elif library == 'mmseg':
        for (h, w), same in segmentor_agreement(pair.torch_model, onnx_path, sizes,
                                                deploy_cfg=deploy_cfg):
            good = same >= TOLERANCE['pixels']
            ok &= good
            print(f'{h}x{w}: {100 * same:.3f}% of pixels get the same class '
                  f'{"ok" if good else "TOO FEW"}')
    else:
        rng = np.random.default_rng(0)
        for h, w in sizes:
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            expected, got, shape = pair.predict(image, (h, w))
            r = match_detections(expected.pred_instances, got.pred_instances)
            good = (r['matched'] == r['compared'] and r['min_iou'] >= TOLERANCE['iou']
                    and r['max_score_diff'] <= TOLERANCE['score']
                    and r['min_mask_agreement'] >= TOLERANCE['mask'])
            ok &= good
            print(f'image {h}x{w} (input {shape[0]}x{shape[1]}): {r["matched"]}/'
                  f'{r["compared"]} top detections found, box IoU >= {r["min_iou"]:.4f}, '
                  f'scores within {r["max_score_diff"]:.1e}, masks agree on >= '
                  f'{100 * r["min_mask_agreement"]:.2f}% {"ok" if good else "DIFFERENT"}')
    return ok


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmhire.deployment.deploy import (
        DeployError,
        check_environment,
        deploy,
        list_deploy_configs,
        load_configs,
    )
    if args.list_deploy_cfgs:
        print('\n'.join(list_deploy_configs()))
        return 0
    name = osp.splitext(osp.basename(args.config))[0]
    work_dir = args.work_dir or osp.join('work_dirs', 'deploy', name)
    try:
        check_environment()
        model_cfg, deploy_cfg = load_configs(args.config, args.deploy_cfg)
        written = deploy(model_cfg, args.checkpoint, deploy_cfg, work_dir, args.img,
                         args.device, config_name=args.config)
    except (DeployError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    for path in written.values():
        print(f'wrote {path}')
    if args.no_check:
        return 0
    if not check(model_cfg, deploy_cfg, args.checkpoint, written['end2end.onnx'],
                 args.check_sizes):
        print(f'error: the deployed model does not agree with PyTorch; the files in '
              f'{work_dir} are kept for inspection', file=sys.stderr)
        return 1
    return 0

if __name__ == '__main__':
    sys.exit(main())

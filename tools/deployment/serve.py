"""Serve a deployed HireMLP model on an image: print the prediction and draw it.

    python tools/deployment/serve.py IMAGE --model PATH \
        [--runtime onnxruntime|openvino|sdk] [--out OUT.png] [--score-thr 0.3] \
        [--config CONFIG]

PATH is an .onnx file of tools/deployment/export_onnx.py (a classifier or a segmentor) or
the work dir of `python -m mmhire deploy` (classifier, segmentor or detector). The image goes
through the model's input contract, stored in the ONNX file (the config's test pipeline and
data preprocessor; --config CONFIG for a file exported by another tool); the result comes
back at the image's size, as tools/inference.py gives it for the PyTorch model: the five
best classes, the class map, or the boxes and pasted masks, drawn with the library's
visualizer into --out. --runtime sdk runs mmdeploy's SDK (`pip install
mmdeploy-runtime==1.3.1`) on a work dir; it preprocesses by the work dir's pipeline.json.
"""
import argparse
import sys

from mmhire.deployment.serve import RUNTIMES, ServeError, describe, serve


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image', help='the image to run the model on')
    parser.add_argument('--model', required=True,
                        help='an .onnx file of export_onnx.py or a deployment work dir')
    parser.add_argument('--runtime', default='onnxruntime', choices=RUNTIMES)
    parser.add_argument('--out', help='where to draw the prediction (.png or .jpg)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detections scoring below this are not printed or drawn')
    parser.add_argument('--config', help='the model config, for an ONNX file that states no '
                        'input contract')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmhire.apis.inference import draw_prediction
    try:
        prediction = serve(args.image, args.model, args.runtime, args.config)
        if args.out:
            draw_prediction(prediction.library, prediction.image, prediction.sample,
                            prediction.dataset_meta, args.out, args.score_thr)
    except (ServeError, ImportError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    height, width = prediction.image.shape[:2]
    print(f'{args.image} ({width}x{height}) by {args.model} in {args.runtime}:')
    for line in describe(prediction, args.score_thr):
        print(f'  {line}')
    if args.out:
        print(f'drawn -> {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

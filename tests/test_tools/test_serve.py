"""Serving without mmdeploy: export_onnx.py's classifier and segmentor files state their input
contract, and tools/deployment/serve.py runs them in ONNX Runtime and OpenVINO on the demo
images, giving what tools/inference.py gives for the PyTorch model."""
import importlib.util
import json
import os

import cv2
import numpy as np
import onnx
import pytest
from conftest import REPO_ROOT, load_tool
from demo_models import random_checkpoint, write_demo_scenes

from mmhire.apis.inference import predict
from mmhire.datasets.demo_data import SHAPES
from mmhire.deployment.contract import CONTRACT_KEY, read_contract
from mmhire.deployment.serve import ServeError, serve

export_tool = load_tool('deployment/export_onnx.py')
serve_tool = load_tool('deployment/serve.py')

CLS = os.path.join(REPO_ROOT, 'configs/demo/hire_t_in1k_demo.py')
UPERNET = os.path.join(REPO_ROOT, 'configs/demo/upernet_hire_t_ade20k_demo.py')
OPENVINO = importlib.util.find_spec('openvino') is not None
RUNTIMES = ['onnxruntime', pytest.param('openvino', marks=pytest.mark.skipif(
    not OPENVINO, reason="OpenVINO is not installed here (pip install 'mmhire[deploy]'); "
    'the default stack has it'))]


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    return write_demo_scenes(tmp_path_factory.mktemp('images'))


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """Each model exported once for the module: name -> (onnx file, config, checkpoint)."""
    folder = tmp_path_factory.mktemp('exported')
    cls_ckpt, seg_ckpt = str(folder / 'cls.pth'), str(folder / 'seg.pth')
    random_checkpoint(CLS, cls_ckpt, classes=list(SHAPES))
    random_checkpoint(UPERNET, seg_ckpt)
    made = {}
    for name, argv, config, checkpoint in [
        ('classifier', ['--classifier', CLS, '--shape', '64', '64'], CLS, cls_ckpt),
        ('classifier_raw', ['--classifier', CLS, '--shape', '64', '64',
                            '--normalize-in-graph'], CLS, cls_ckpt),
        ('class_map', ['--segmentor', UPERNET, '--shape', '128', '128'], UPERNET, seg_ckpt),
        ('logits', ['--segmentor', UPERNET, '--logits', '--shape', '128', '128'], UPERNET,
         seg_ckpt),
    ]:
        path = str(folder / f'{name}.onnx')
        assert export_tool.main([*argv, '--checkpoint', checkpoint, '--out', path,
                                 '--check-sizes', '64x64', '97x131']) == 0
        made[name] = (path, config, checkpoint)
    return made


def test_every_file_states_its_input_contract(exported):
    """The contract in the file's metadata: what the data preprocessor does (RGB, ImageNet
    mean and std, no padding for these configs), the outputs, the class names the
    checkpoint saved, and the config's test pipeline without its annotation step."""
    path, _, _ = exported['classifier']
    contract = read_contract(path)
    raw = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(raw[CONTRACT_KEY]) == contract
    assert contract['library'] == 'mmpretrain' and contract['task'] == 'classification'
    pixels = contract['input']
    assert pixels['channel_order'] == 'RGB' and pixels['layout'] == 'NCHW'
    assert pixels['mean'] == [123.675, 116.28, 103.53]
    assert pixels['std'] == [58.395, 57.12, 57.375]
    assert pixels['normalized_in_graph'] is False and pixels['size_divisor'] == 1
    assert pixels['min_size'] == 32
    assert list(contract['outputs']) == ['scores']
    assert 'softmax' in contract['outputs']['scores']
    assert contract['classes'] == list(SHAPES)
    assert [s['type'] for s in contract['test_pipeline']] == [
        'LoadImageFromFile', 'ResizeEdge', 'CenterCrop', 'PackInputs']
    seg = read_contract(exported['logits'][0])
    assert seg['task'] == 'segmentation-logits' and list(seg['outputs']) == ['logits']
    assert seg['align_corners'] is False and len(seg['classes']) == 150
    assert 'LoadAnnotations' not in [s['type'] for s in seg['test_pipeline']]
    assert read_contract(exported['classifier_raw'][0])['input']['normalized_in_graph']


def test_classifier_scores_are_probabilities_as_on_the_mmdeploy_route(exported):
    """The classifier file gives probabilities (summing to 1 per image), mmpretrain's
    pred_score, as mmdeploy's exported classifiers do."""
    from mmhire.deployment.export import onnx_session
    (scores, ) = onnx_session(exported['classifier'][0]).run(
        None, {'input': np.random.default_rng(0).normal(size=(2, 3, 64, 80)).astype('f4')})
    assert scores.shape == (2, 3) and (scores >= 0).all()
    np.testing.assert_allclose(scores.sum(1), 1, atol=1e-6)


@pytest.mark.parametrize('runtime', RUNTIMES)
@pytest.mark.parametrize('name', ['classifier', 'classifier_raw'])
def test_served_classifier_equals_pytorch(exported, images, runtime, name):
    """On both demo images, with the normalisation outside or inside the graph: the same
    top-1 as tools/inference.py's PyTorch model, class probabilities within 1e-4."""
    path, config, checkpoint = exported[name]
    for image in images:
        _, expected, _ = predict(config, checkpoint, image)
        got = serve(image, path, runtime)
        assert got.library == 'mmpretrain'
        assert int(got.sample.pred_label) == int(expected.pred_label)
        assert float((got.sample.pred_score - expected.pred_score).abs().max()) < 1e-4


@pytest.mark.parametrize('runtime', RUNTIMES)
def test_served_segmentor_equals_pytorch(exported, images, runtime):
    """The class map at the image's size: from the logits file, the same class as PyTorch on
    >= 99.9% of the pixels on both images (the scores resized before the argmax, as mmseg
    does); from the class-map file, where the test pipeline keeps the image's size."""
    _, config, checkpoint = exported['logits']
    for image in images:
        _, expected, _ = predict(config, checkpoint, image)
        files = ['logits'] + (['class_map'] if image.endswith('.png') else [])
        for name in files:
            got = serve(image, exported[name][0], runtime).sample.pred_sem_seg.data
            assert got.shape == expected.pred_sem_seg.data.shape
            same = float((got == expected.pred_sem_seg.data).float().mean())
            assert same >= 0.999, (name, image, same)


def test_class_map_file_resized_by_nearest_class(exported, images):
    """The class-map file, on an image the test pipeline resizes, is resized by nearest class
    to the image's size: it differs from mmseg's resize of the scores at class borders
    (measured here on random weights, whose classes change every few pixels); the docs say
    to export --logits for that."""
    _, config, checkpoint = exported['class_map']
    _, expected, _ = predict(config, checkpoint, images[1])
    got = serve(images[1], exported['class_map'][0]).sample.pred_sem_seg.data
    same = float((got == expected.pred_sem_seg.data).float().mean())
    assert 0.9 < same < 0.999


def test_serve_tool_prints_and_draws(exported, images, tmp_path, capsys):
    out = tmp_path / 'drawn.png'
    assert serve_tool.main([images[1], '--model', exported['classifier'][0],
                            '--out', str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert '160x120' in printed[0] and 'onnxruntime' in printed[0]
    assert len(printed) == 1 + 3 + 1  # three classes, then the drawing
    assert printed[1].split(':')[0].strip() in SHAPES
    assert cv2.imread(str(out)) is not None
    assert serve_tool.main([images[0], '--model', exported['logits'][0],
                            '--out', str(tmp_path / 'seg.png')]) == 0
    assert 'of the pixels' in capsys.readouterr().out
    assert cv2.imread(str(tmp_path / 'seg.png')).shape == (128, 128, 3)


def test_bad_input_stops_with_the_fix(exported, images, tmp_path, capsys):
    bare = str(tmp_path / 'bare.onnx')  # an ONNX file that states no contract
    model = onnx.load(exported['classifier'][0])
    del model.metadata_props[:]
    onnx.save(model, bare)
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'not an image')
    corrupt = tmp_path / 'corrupt.onnx'  # a download cut short
    corrupt.write_bytes(open(exported['classifier'][0], 'rb').read()[:5000])
    backbone = str(tmp_path / 'backbone.onnx')
    assert export_tool.main(['--arch', 'tiny', '--out', backbone, '--no-check']) == 0
    capsys.readouterr()
    model_path = exported['classifier'][0]
    for argv, message in [
        ([images[0], '--model', str(tmp_path / 'none.onnx')], 'does not exist'),
        ([images[0], '--model', str(tmp_path)], 'holds no end2end.onnx'),
        ([str(tmp_path / 'none.jpg'), '--model', model_path], 'none.jpg'),
        ([str(broken), '--model', model_path], 'could not be decoded'),
        ([images[0], '--model', bare], '--config CONFIG'),
        ([images[0], '--model', str(corrupt)], 'is not a readable ONNX file'),
        ([images[0], '--model', backbone], 'is a backbone'),
        ([images[0], '--model', model_path, '--runtime', 'sdk'], 'not a deployment work dir'),
    ]:
        assert serve_tool.main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    # a file without a contract serves with its config
    assert serve_tool.main([images[0], '--model', bare, '--config', CLS]) == 0
    with pytest.raises(SystemExit):
        export_tool.main(['--logits', '--out', str(tmp_path / 'x.onnx')])
    assert '--logits goes with --segmentor' in capsys.readouterr().err
    assert export_tool.main(['--classifier', UPERNET, '--out', str(tmp_path / 'x.onnx')]) == 1
    assert 'is not an mmpretrain config' in capsys.readouterr().err
    assert not os.path.exists(tmp_path / 'x.onnx')


def test_a_tiny_image_is_refused(exported, tmp_path):
    """An image the test pipeline makes smaller than 32 pixels a side stops with the size."""
    path = str(tmp_path / 'thin.png')
    cv2.imwrite(path, np.zeros((8, 400, 3), np.uint8))
    with pytest.raises(ServeError, match='below the model\'s minimum of 32'):
        serve(path, exported['logits'][0])

"""Deployment with mmdeploy (the `deploy` stack: torch 2.1, mmdeploy 1.3.1, onnxruntime 1.15.1):
each library's model exported once through mmhire's deploy configs, then compared with the
PyTorch model at sizes other than the export size, and by the metrics of the demo sets."""
import os
import os.path as osp

import numpy as np
import pytest
import torch
from demo_models import random_checkpoint, write_demo_scenes

from mmhire.deployment.deploy import DeployError, deploy
from mmhire.utils.config import load_config

pytestmark = pytest.mark.deploy

CLS = 'configs/demo/hire_t_in1k_demo.py'
UPERNET = 'configs/demo/upernet_hire_t_ade20k_demo.py'
SEM_FPN = 'configs/sem_fpn_hire_t_ade20k.py'
MASK_RCNN = 'configs/demo/mask_rcnn_hire_t_coco_demo.py'
CASCADE = 'configs/cascade_mask_rcnn_hire_t_coco_ms3x.py'


def deploy_cfg(name):
    from mmdeploy.utils import load_config as mmdeploy_load_config

    from mmhire.deployment.deploy import resolve_deploy_config
    return mmdeploy_load_config(resolve_deploy_config(name))[0]


@pytest.fixture(scope='module')
def repo(request):
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    return root


@pytest.fixture(scope='module')
def deployed(tmp_path_factory, repo):
    """Deploys each config once for the module: name -> (work dir, checkpoint, model)."""
    cache = {}

    def get(config, deploy_config=None):
        key = (config, deploy_config)
        if key not in cache:
            work = tmp_path_factory.mktemp('deploy')
            checkpoint = str(work / 'model.pth')
            model = random_checkpoint(osp.join(repo, config), checkpoint)
            deploy(osp.join(repo, config), checkpoint, deploy_config, str(work / 'out'))
            cache[key] = (str(work / 'out'), checkpoint, model)
        return cache[key]
    return get


OTHER_SIZES = [(32, 32), (33, 47), (160, 224), (224, 224), (257, 193), (384, 640)]


def test_classifier_every_size(deployed):
    """Exported at 64x64 (the demo test pipeline's crop), the class scores equal PyTorch's
    within 1e-4 at every size, at another batch size."""
    from mmhire.deployment.check import classifier_agreement
    work, _, model = deployed(CLS)
    assert sorted(os.listdir(work)) == ['deploy.json', 'detail.json', 'end2end.onnx',
                                        'pipeline.json']
    results = classifier_agreement(model, f'{work}/end2end.onnx', [(64, 64)] + OTHER_SIZES,
                                   batch=3)
    assert max(diff for _, diff in results) < 1e-4, results


def test_mmdeploy_exports_the_stages_channels_last(deployed):
    """mmdeploy's export is an ONNX export: HireMLP's 1x1 convolutions are MatMul nodes; the
    only Conv nodes are the downsampling convolutions and the reweighting MLPs'."""
    import onnx

    from mmhire.models.layers import PointwiseConv2d
    work, _, model = deployed(CLS)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    pointwise = sum(isinstance(m, PointwiseConv2d) for m in convs)
    assert pointwise > 0
    nodes = onnx.load(f'{work}/end2end.onnx').graph.node
    assert sum(n.op_type == 'Conv' for n in nodes) == len(convs) - pointwise
    assert sum(n.op_type == 'MatMul' for n in nodes) >= pointwise


@pytest.mark.parametrize('config', [UPERNET, SEM_FPN], ids=['upernet', 'sem_fpn'])
def test_segmentor_every_size(deployed, config):
    """UperNet (pyramid pooling) and Semantic FPN (Upsample), exported once: >= 99.9% of the
    pixels get PyTorch's class at every size, including maps smaller than the pooling's six
    bins (mmhire's rewrites of mmseg's PPM and Upsample)."""
    from mmhire.deployment.check import segmentor_agreement
    work, _, model = deployed(config)
    results = segmentor_agreement(model, f'{work}/end2end.onnx', OTHER_SIZES)
    assert min(same for _, same in results) >= 0.999, results


def test_static_segmentor(deployed):
    """The static deploy config serves its 512x512 only: it agrees there, and ONNX Runtime
    refuses another size instead of computing something else."""
    from mmhire.deployment.check import onnx_session, segmentor_agreement
    work, _, model = deployed(UPERNET, 'segmentation_onnxruntime_static-512x512')
    path = f'{work}/end2end.onnx'
    assert segmentor_agreement(model, path, [(512, 512)])[0][1] >= 0.999
    with pytest.raises(Exception, match='(?i)dimension|shape'):
        onnx_session(path).run(None, {'input': np.zeros((1, 3, 256, 256), np.float32)})


@pytest.fixture(scope='module')
def cascade_demo_config(tmp_path_factory, repo):
    """mmhire's Cascade Mask R-CNN (class-aware regression) with the demo's three classes and
    test pipeline: 80 classes of random weights score under the 0.05 threshold. Its RPN
    keeps 40 proposals and its last stage 20 detections per image, not 1000 and 100: the
    tests compare the ten best (of 20 found at every size and trial), and the
    four-convolution box heads on the proposals (three stages) and the masks (three heads)
    took most of the test's time."""
    cfg = load_config(osp.join(repo, CASCADE))
    for head in cfg.model.roi_head.bbox_head:
        head.num_classes = 3
    cfg.model.roi_head.mask_head.num_classes = 3
    cfg.model.test_cfg.rpn.max_per_img = 40
    cfg.model.test_cfg.rcnn.max_per_img = 20
    demo = load_config(osp.join(repo, MASK_RCNN))
    cfg.test_pipeline = demo.test_pipeline
    cfg.test_dataloader = demo.test_dataloader
    path = str(tmp_path_factory.mktemp('cascade') / 'cascade_demo.py')
    cfg.dump(path)
    return path


@pytest.mark.parametrize('name', ['mask_rcnn', 'cascade'])
def test_detector_every_size(deployed, repo, cascade_demo_config, name):
    """Mask R-CNN and Cascade Mask R-CNN (class-aware regression), each exported once at
    96x128 and fed three random images at six sizes, the export size among them: PyTorch's
    ten best detections are found again every time, with the same labels, box IoU >= 0.99,
    scores within 1e-3 and masks agreeing on >= 99% of the pixels. mmhire's rewrites of the
    RPN (mmdet's per-level NMS) and of Cascade's box stages make it so."""
    from mmhire.deployment.check import DeployedPair, match_detections
    config = MASK_RCNN if name == 'mask_rcnn' else cascade_demo_config
    work, checkpoint, _ = deployed(config)
    pair = DeployedPair(load_config(osp.join(repo, config)),
                        deploy_cfg('instance-seg_onnxruntime_dynamic'), checkpoint,
                        f'{work}/end2end.onnx')
    for trial in range(3):
        rng = np.random.default_rng(trial)
        for size in [(64, 64), (64, 96), (96, 128), (128, 64), (160, 224), (224, 160)]:
            image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            expected, got, shape = pair.predict(image, size)
            assert shape == size
            report = match_detections(expected.pred_instances, got.pred_instances)
            assert report['compared'] == report['matched'] == 10, (trial, size, report)
            assert report['min_iou'] >= 0.99, (trial, size, report)
            assert report['max_score_diff'] <= 1e-3, (trial, size, report)
            assert report['min_mask_agreement'] >= 0.99, (trial, size, report)


def test_cascade_with_class_aware_regression_only_on_onnxruntime(tmp_path, repo,
                                                                  cascade_demo_config):
    """mmhire's Cascade rewrite is registered for ONNX Runtime; for another backend mmdeploy's
    own rewrite would assert class-agnostic regression, so the deployment stops first."""
    checkpoint = str(tmp_path / 'cascade.pth')
    random_checkpoint(cascade_demo_config, checkpoint)
    trt = tmp_path / 'trt.py'
    trt.write_text(f"_base_ = ['{repo}/configs/deploy/instance-seg_onnxruntime_dynamic.py']\n"
                   "backend_config = dict(_delete_=True, type='tensorrt')\n")
    assert_refused("stages \\[0, 1\\] regress boxes per class.*for 'tensorrt'",
                   cascade_demo_config, checkpoint, str(trt), work_dir=str(tmp_path / 'out'))


def test_adaptive_pool_rewrite_is_exact():
    """The PPM rewrite's adaptive pool equals PyTorch's for maps larger and smaller than the
    bins, square or not."""
    from mmhire.deployment.any_size import adaptive_avg_pool2d_any_size
    torch.manual_seed(0)
    for h, w in [(1, 1), (2, 3), (5, 7), (6, 6), (13, 4), (32, 45)]:
        x = torch.randn(2, 3, h, w)
        for bins in [1, 2, 3, 6, (2, 5)]:
            expected = torch.nn.functional.adaptive_avg_pool2d(x, bins)
            torch.testing.assert_close(adaptive_avg_pool2d_any_size(x, bins), expected,
                                       rtol=1e-5, atol=1e-6)


def make_demo_sets(root):
    from mmhire.datasets.demo_data import make_ade_demo, make_coco_demo, make_imagenet_demo
    make_coco_demo(osp.join(root, 'data/demo/coco'), num_train=2, num_val=12)
    make_ade_demo(osp.join(root, 'data/demo/ade/ADEChallengeData2016'), num_train=2,
                  num_val=8)
    make_imagenet_demo(osp.join(root, 'data/demo/imagenet'), num_train_per_class=1,
                       num_val_per_class=10)


@pytest.mark.parametrize('config,keys', [
    (CLS, ['accuracy/top1']),
    (UPERNET, ['mIoU', 'aAcc']),
    (MASK_RCNN, ['coco/bbox_mAP', 'coco/segm_mAP']),
], ids=['cls', 'upernet', 'mask_rcnn'])
def test_metrics_of_the_deployed_model(deployed, repo, tmp_path, monkeypatch, config, keys):
    """mmdeploy's test runner on the demo validation sets: the ONNX model's metrics equal the
    PyTorch model's within 0.005."""
    from mmhire.deployment.check import DeployedPair
    work, checkpoint, _ = deployed(config)
    monkeypatch.chdir(tmp_path)
    make_demo_sets(str(tmp_path))
    model_cfg = load_config(osp.join(repo, config))
    model_cfg.test_dataloader.num_workers = 0
    model_cfg.test_dataloader.persistent_workers = False
    library = model_cfg.default_scope
    name = {'mmpretrain': 'classification', 'mmseg': 'segmentation',
            'mmdet': 'instance-seg'}[library]
    pair = DeployedPair(model_cfg, deploy_cfg(f'{name}_onnxruntime_dynamic'), checkpoint,
                        f'{work}/end2end.onnx')
    expected, got = pair.evaluate(str(tmp_path / 'eval'))
    for key in keys:
        assert key in expected and key in got, (expected, got)
        assert abs(expected[key] - got[key]) <= 0.005 * (100 if library != 'mmdet' else 1), (
            key, expected, got)


# Bad input: a clear error, and the work dir as it was.

@pytest.fixture
def cls_checkpoint(tmp_path, repo):
    path = str(tmp_path / 'cls.pth')
    random_checkpoint(osp.join(repo, CLS), path)
    return path


def assert_refused(match, *args, work_dir, **kwargs):
    before = sorted(os.listdir(work_dir)) if osp.isdir(work_dir) else None
    with pytest.raises(DeployError, match=match):
        deploy(*args, work_dir=work_dir, **kwargs)
    after = sorted(os.listdir(work_dir)) if osp.isdir(work_dir) else None
    assert after == before


def test_bad_input(tmp_path, repo, cls_checkpoint):
    work = str(tmp_path / 'out')
    os.makedirs(work)
    with open(osp.join(work, 'end2end.onnx'), 'w') as f:
        f.write('an earlier deployment')
    cls = osp.join(repo, CLS)
    # not an mmhire model
    resnet = tmp_path / 'resnet.py'
    resnet.write_text("_base_ = 'mmpretrain::resnet/resnet18_8xb32_in1k.py'\n")
    assert_refused('not an mmhire model.*HireMLP', str(resnet), cls_checkpoint, work_dir=work)
    # a config without a model
    empty = tmp_path / 'empty.py'
    empty.write_text('x = 1\n')
    assert_refused('has no `model`', str(empty), cls_checkpoint, work_dir=work)
    # missing, corrupt and mismatched checkpoints
    assert_refused('does not exist', cls, str(tmp_path / 'none.pth'), work_dir=work)
    corrupt = tmp_path / 'corrupt.pth'
    corrupt.write_bytes(open(cls_checkpoint, 'rb').read()[:1000])
    assert_refused('truncated or corrupt', cls, str(corrupt), work_dir=work)
    seg_checkpoint = str(tmp_path / 'seg.pth')
    random_checkpoint(osp.join(repo, UPERNET), seg_checkpoint)
    assert_refused('does not fit the model.*missing', cls, seg_checkpoint, work_dir=work)
    # a deploy config of another library, an unknown one, a size below the minimum
    assert_refused("for 'mmseg' models.*classification_onnxruntime_dynamic", cls,
                   cls_checkpoint, 'segmentation_onnxruntime_dynamic', work_dir=work)
    assert_refused('neither a file nor', cls, cls_checkpoint, 'tensorrt_dynamic',
                   work_dir=work)
    small = tmp_path / 'small.py'
    small.write_text(f"_base_ = ['{repo}/configs/deploy/classification_onnxruntime_dynamic.py']"
                     '\nonnx_config = dict(input_shape=[16, 16], dynamic_axes=None)\n')
    assert_refused('below HireMLP.s minimum input of 32', cls, cls_checkpoint, str(small),
                   work_dir=work)
    assert open(osp.join(work, 'end2end.onnx')).read() == 'an earlier deployment'


def test_failed_export_leaves_the_work_dir_as_it_was(tmp_path, repo, cls_checkpoint,
                                                     monkeypatch):
    """An export that fails after writing part of its files (here: mmdeploy's meta files
    fail) leaves neither them nor a staging folder, and keeps an earlier deployment."""
    import mmdeploy.backend.sdk.export_info as export_info
    work = str(tmp_path / 'out')
    os.makedirs(work)
    with open(osp.join(work, 'end2end.onnx'), 'w') as f:
        f.write('an earlier deployment')

    def broken(*args, **kwargs):
        raise OSError('disk full')
    monkeypatch.setattr(export_info, 'export2SDK', broken)
    with pytest.raises(OSError, match='disk full'):
        deploy(osp.join(repo, CLS), cls_checkpoint, work_dir=work)
    assert os.listdir(work) == ['end2end.onnx']
    assert open(osp.join(work, 'end2end.onnx')).read() == 'an earlier deployment'


def test_command_line(tmp_path, repo, cls_checkpoint, capsys):
    """`python -m mmhire deploy CONFIG CKPT` writes the files and prints its comparison;
    a bad checkpoint exits 1 with the reason."""
    from mmhire.__main__ import main
    work = str(tmp_path / 'cli')
    assert main(['deploy', osp.join(repo, CLS), cls_checkpoint, '--work-dir', work,
                 '--check-sizes', '64x64', '96x160']) == 0
    out = capsys.readouterr().out
    assert f'wrote {work}/end2end.onnx' in out
    assert '96x160: class scores differ by' in out and 'ok' in out
    assert main(['deploy', osp.join(repo, CLS), str(tmp_path / 'no.pth'),
                 '--work-dir', work]) == 1
    assert 'does not exist' in capsys.readouterr().err
    assert main(['deploy', '--list-deploy-cfgs']) == 0
    assert 'instance-seg_onnxruntime_dynamic' in capsys.readouterr().out.split()


_BARE_BACKBONE_EXPORT = '''
import sys
import numpy as np
import onnxruntime
import torch
from mmdeploy.apis.onnx import export  # mmdeploy first, as its tools import it
import mmhire

torch.manual_seed(0)
model = mmhire.HireMLP('tiny', out_indices=(3, )).eval()
axes = dict(input={0: 'batch', 2: 'height', 3: 'width'})
cfg = dict(codebase_config=dict(type='mmpretrain', task='Classification'),
           backend_config=dict(type='onnxruntime'),
           onnx_config=dict(type='onnx', opset_version=11, input_names=['input'],
                            output_names=['output'], input_shape=None, dynamic_axes=axes))
export(model, torch.zeros(1, 3, 224, 224), sys.argv[1], backend='onnxruntime',
       context_info=dict(cfg=cfg), input_names=['input'], output_names=['output'],
       dynamic_axes=axes, opset_version=11)
x = torch.randn(2, 3, 97, 131)
session = onnxruntime.InferenceSession(sys.argv[1] + '.onnx',
                                       providers=['CPUExecutionProvider'])
got = session.run(None, {'input': x.numpy()})[0]
with torch.no_grad():
    expected = model(x)[0].numpy()
print('same_shape', got.shape == expected.shape, 'error',
      float(np.abs(got - expected).max() / np.abs(expected).max()))
'''


def test_mmdeploy_exports_a_bare_backbone_after_import_mmhire(tmp_path):
    """mmdeploy's own export API on a HireMLP backbone alone, with only mmhire imported
    besides mmdeploy (its rewrites registered): the export succeeds (mmdeploy's rewriter
    context no longer imports mmdet and mmseg, which ended it in ``KeyError: -1``), and the
    file serves another size as PyTorch does."""
    import subprocess
    import sys
    result = subprocess.run([sys.executable, '-c', _BARE_BACKBONE_EXPORT,
                             str(tmp_path / 'backbone')], capture_output=True, text=True,
                            timeout=600, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    line = result.stdout.strip().splitlines()[-1].split()
    assert line[:2] == ['same_shape', 'True']
    assert float(line[-1]) < 1e-4


# Serving the work dirs: tools/deployment/serve.py in ONNX Runtime, OpenVINO and mmdeploy's SDK,
# against tools/inference.py's PyTorch model on the demo images.

OPENVINO_CONFIGS = {CLS: 'classification_openvino_dynamic-224x224',
                    UPERNET: 'segmentation_openvino_dynamic-512x512',
                    MASK_RCNN: 'instance-seg_openvino_dynamic-800x1344'}


@pytest.fixture(scope='module')
def demo_images(tmp_path_factory):
    return write_demo_scenes(tmp_path_factory.mktemp('images'))


def assert_served_like_pytorch(config, checkpoint, model, runtime, images):
    """serve() of the deployed ``model`` equals mmhire's inference of the PyTorch model on
    every image: the same top-1 with probabilities within 1e-4 (1e-2 and the top-1 only for
    the SDK, whose resize differs from mmcv's); >= 99.9% of the pixels (on an image the test
    pipeline keeps at its size: the class map in the graph is resized by nearest class);
    PyTorch's ten best detections found again (same label, IoU >= 0.99, scores within 1e-3,
    pasted masks agreeing on >= 99% of the pixels), in the image's coordinates."""
    from mmhire.apis.inference import predict
    from mmhire.deployment.check import match_detections
    from mmhire.deployment.serve import serve
    for image in images:
        library, expected, _ = predict(config, checkpoint, image)
        got = serve(image, model, runtime).sample
        if library == 'mmpretrain':
            assert int(got.pred_label) == int(expected.pred_label), image
            top = int(expected.pred_label)
            tolerance = 1e-2 if runtime == 'sdk' else 1e-4
            assert abs(float(got.pred_score[top] - expected.pred_score[top])) < tolerance
            if runtime != 'sdk':
                assert float((got.pred_score - expected.pred_score).abs().max()) < tolerance
        elif library == 'mmseg':
            a, b = got.pred_sem_seg.data, expected.pred_sem_seg.data
            assert a.shape == b.shape
            if image.endswith('.png'):
                assert float((a == b).float().mean()) >= 0.999, image
        else:
            report = match_detections(expected.pred_instances, got.pred_instances)
            assert report['compared'] == report['matched'] == 10, (image, report)
            assert report['min_iou'] >= 0.99 and report['max_score_diff'] <= 1e-3, report
            assert report['min_mask_agreement'] >= 0.99, report
            assert got.pred_instances.masks.shape[-2:] == expected.pred_instances.masks.shape[
                -2:]


@pytest.mark.parametrize('runtime', ['onnxruntime', 'openvino'])
@pytest.mark.parametrize('config', [CLS, UPERNET, MASK_RCNN], ids=['cls', 'upernet', 'mask_rcnn'])
def test_serve_the_onnxruntime_work_dir(deployed, repo, demo_images, config, runtime):
    """The ONNX Runtime work dir served in ONNX Runtime and, its end2end.onnx, in OpenVINO."""
    work, checkpoint, _ = deployed(config)
    assert_served_like_pytorch(osp.join(repo, config), checkpoint, work, runtime, demo_images)


@pytest.mark.parametrize('config', [CLS, UPERNET], ids=['cls', 'upernet'])
def test_sdk_serves_classifiers_and_segmentors(deployed, repo, demo_images, config):
    """mmdeploy's SDK (mmdeploy-runtime 1.3.1) on the work dir, twice in a row."""
    work, checkpoint, _ = deployed(config)
    for _ in range(2):
        assert_served_like_pytorch(osp.join(repo, config), checkpoint, work, 'sdk',
                                   demo_images)


def test_sdk_detector_is_refused_with_the_reason(deployed, demo_images, capsys):
    from conftest import load_tool
    work, _, _ = deployed(MASK_RCNN)
    serve_tool = load_tool('deployment/serve.py')
    assert serve_tool.main([demo_images[0], '--model', work, '--runtime', 'sdk']) == 2
    err = capsys.readouterr().err
    assert 'does not serve detectors reliably' in err and '--runtime onnxruntime' in err


@pytest.mark.parametrize('config', [CLS, UPERNET, MASK_RCNN], ids=['cls', 'upernet', 'mask_rcnn'])
def test_openvino_through_mmdeploy(deployed, repo, demo_images, config):
    """mmhire's OpenVINO deploy configs: mmdeploy's export and Model Optimizer step write
    end2end.xml/.bin (converted at one size); run by OpenVINO at other sizes they agree with
    PyTorch as the ONNX Runtime deployment does, and serve.py serves the work dir."""
    from mmhire.deployment.check import (
        DeployedPair,
        classifier_agreement,
        match_detections,
        segmentor_agreement,
    )
    work, checkpoint, model = deployed(config, OPENVINO_CONFIGS[config])
    assert {'end2end.xml', 'end2end.bin', 'end2end.onnx'} <= set(os.listdir(work))
    cfg = deploy_cfg(OPENVINO_CONFIGS[config])
    onnx_path = f'{work}/end2end.onnx'
    if config == CLS:
        results = classifier_agreement(model, onnx_path, OTHER_SIZES, batch=2,
                                       deploy_cfg=cfg)
        assert max(diff for _, diff in results) < 1e-4, results
    elif config == UPERNET:
        results = segmentor_agreement(model, onnx_path, OTHER_SIZES, deploy_cfg=cfg)
        assert min(same for _, same in results) >= 0.999, results
    else:
        pair = DeployedPair(load_config(osp.join(repo, config)), cfg, checkpoint, onnx_path)
        rng = np.random.default_rng(0)
        for size in [(64, 64), (96, 128), (160, 224)]:
            image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            expected, got, _ = pair.predict(image, size)
            report = match_detections(expected.pred_instances, got.pred_instances)
            assert report['compared'] == report['matched'] == 10, (size, report)
            assert report['min_iou'] >= 0.99 and report['max_score_diff'] <= 1e-3, report
            assert report['min_mask_agreement'] >= 0.99, report
    assert_served_like_pytorch(osp.join(repo, config), checkpoint, work, 'openvino',
                               demo_images)

"""The libraries' own inference APIs run mmhire configs and checkpoints unchanged: mmdet's
DetInferencer, mmseg's MMSegInferencer and mmpretrain's ImageClassificationInferencer, each
given a config file of configs/ (its custom_imports bring in mmhire) and a checkpoint."""
import os

import cv2
import numpy as np
import pytest
import torch
from conftest import CONFIG_DIR

from mmhire.utils.config import build_model, load_config

pytestmark = pytest.mark.floor


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp('image') / 'street.jpg'
    rng = np.random.default_rng(0)
    picture = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    cv2.rectangle(picture, (30, 20), (110, 90), (20, 200, 40), -1)
    cv2.imwrite(str(path), picture)
    return str(path)


def checkpoint_of(config, path, **changes):
    """Weights of a freshly built model of ``config`` with ``changes`` (name -> tensor) made,
    saved as training saves them."""
    torch.manual_seed(0)
    state = build_model(load_config(config)).state_dict()
    state.update(changes)
    torch.save({'state_dict': state, 'meta': {}}, path)
    return str(path)


def test_mmdet_det_inferencer(image, tmp_path):
    from mmdet.apis import DetInferencer

    config = os.path.join(CONFIG_DIR, 'mask_rcnn_hire_t_coco.py')
    # An untrained classifier scores every class about 1/81, below the config's 0.05: a bias
    # towards class 2 (car) in the checkpoint makes it detect cars, from these weights only.
    bias = torch.zeros(81)
    bias[2] = 8.0
    weights = checkpoint_of(config, tmp_path / 'det.pth', **{
        'roi_head.bbox_head.fc_cls.bias': bias})
    inferencer = DetInferencer(model=config, weights=weights, device='cpu')
    assert type(inferencer.model.backbone).__name__ == 'HireMLP'
    out = inferencer(image, out_dir=str(tmp_path / 'out'), pred_score_thr=0.0)
    (pred, ) = out['predictions']
    assert set(pred) >= {'labels', 'scores', 'bboxes', 'masks'}
    assert len(pred['labels']) == len(pred['bboxes']) == len(pred['scores']) > 0
    assert set(pred['labels']) == {2}
    drawn = cv2.imread(str(tmp_path / 'out' / 'vis' / 'street.jpg'))
    assert drawn is not None and drawn.shape == (120, 160, 3)


def test_mmseg_inferencer(image, tmp_path):
    from mmseg.apis import MMSegInferencer

    config = os.path.join(CONFIG_DIR, 'upernet_hire_t_ade20k.py')
    weights = checkpoint_of(config, tmp_path / 'seg.pth')
    inferencer = MMSegInferencer(model=config, weights=weights, device='cpu')
    assert type(inferencer.model.backbone).__name__ == 'HireMLP'
    out = inferencer(image, out_dir=str(tmp_path / 'out'), return_datasamples=False)
    labels = np.asarray(out['predictions'])
    assert labels.shape == (120, 160)
    assert labels.min() >= 0 and labels.max() < 150
    assert os.listdir(tmp_path / 'out' / 'vis')


def test_mmpretrain_image_classification_inferencer(image, tmp_path):
    from mmpretrain.apis import ImageClassificationInferencer

    config = os.path.join(CONFIG_DIR, 'hire_t_in1k.py')
    weights = checkpoint_of(config, tmp_path / 'cls.pth')
    inferencer = ImageClassificationInferencer(model=config, pretrained=weights, device='cpu')
    assert type(inferencer.model.backbone).__name__ == 'HireMLP'
    (result, ) = inferencer(image)
    scores = np.asarray(result['pred_scores'])
    assert scores.shape == (1000, ) and abs(scores.sum() - 1) < 1e-4
    assert result['pred_label'] == int(scores.argmax())
    # The weights given are the weights used: the head's bias decides the class alone when
    # every other weight is zero.
    state = torch.load(weights, weights_only=True)
    state['state_dict'] = {k: torch.zeros_like(v) if k.endswith('weight') and v.dim() > 1
                           else v for k, v in state['state_dict'].items()}
    state['state_dict']['head.fc.bias'] = torch.zeros(1000)
    state['state_dict']['head.fc.bias'][417] = 5.0
    torch.save(state, tmp_path / 'biased.pth')
    inferencer = ImageClassificationInferencer(model=config, pretrained=str(
        tmp_path / 'biased.pth'), device='cpu')
    assert inferencer(image)[0]['pred_label'] == 417

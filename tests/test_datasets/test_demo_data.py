import hashlib
import json
import os

import cv2
import numpy as np
from pycocotools.coco import COCO

from mmhire.datasets.demo_data import (
    ADE_BACKGROUND_LABEL,
    ADE_SHAPE_LABELS,
    SHAPES,
    make_ade_demo,
    make_coco_demo,
    make_demo_data,
    make_imagenet_demo,
)


def tree_digest(root):
    digest = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, 'rb') as f:
                digest.update(f.read())
    return digest.hexdigest()


def test_deterministic(tmp_path):
    make_demo_data(str(tmp_path / 'a'), seed=3)
    make_demo_data(str(tmp_path / 'b'), seed=3)
    make_demo_data(str(tmp_path / 'c'), seed=4)
    assert tree_digest(tmp_path / 'a') == tree_digest(tmp_path / 'b')
    assert tree_digest(tmp_path / 'a') != tree_digest(tmp_path / 'c')


def test_coco_annotations_are_valid(tmp_path):
    counts = make_coco_demo(str(tmp_path), num_train=12, num_val=4, size=96)
    assert counts['train_images'] == 12 and counts['val_images'] == 4
    coco = COCO(str(tmp_path / 'annotations/instances_train2017.json'))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(SHAPES)
    assert len(coco.getAnnIds()) == counts['train_annotations'] >= 12
    for ann in coco.loadAnns(coco.getAnnIds()):
        image = coco.loadImgs(ann['image_id'])[0]
        mask = coco.annToMask(ann)
        x, y, w, h = ann['bbox']
        assert 0 <= x and 0 <= y and x + w <= image['width'] and y + h <= image['height']
        assert abs(mask.sum() - ann['area']) <= 0.15 * ann['area'] + 10
        assert os.path.isfile(tmp_path / 'train2017' / image['file_name'])


def test_ade_layout(tmp_path):
    make_ade_demo(str(tmp_path), num_train=3, num_val=2, size=64)
    labels = sorted(os.listdir(tmp_path / 'annotations/training'))
    images = sorted(os.listdir(tmp_path / 'images/training'))
    assert len(labels) == 3 and [n[:-4] for n in labels] == [n[:-4] for n in images]
    values = set()
    for name in labels:
        label = cv2.imread(str(tmp_path / 'annotations/training' / name), cv2.IMREAD_UNCHANGED)
        assert label.shape == (64, 64) and label.dtype == np.uint8
        values |= set(np.unique(label).tolist())
    assert ADE_BACKGROUND_LABEL in values
    assert values <= {ADE_BACKGROUND_LABEL, *ADE_SHAPE_LABELS}


def test_imagenet_layout(tmp_path):
    counts = make_imagenet_demo(str(tmp_path), num_train_per_class=2, num_val_per_class=1)
    assert counts == {'train': 6, 'val': 3}
    assert sorted(os.listdir(tmp_path / 'train')) == sorted(SHAPES)


def test_tool_writes_summary(tmp_path, capsys):
    from conftest import load_tool
    tool = load_tool('misc/make_demo_data.py')
    tool.main(['--root', str(tmp_path), '--sets', 'imagenet'])
    summary = json.loads(capsys.readouterr().out)
    assert summary['imagenet'] == {'train': 900, 'val': 90}
    assert not (tmp_path / 'coco').exists()

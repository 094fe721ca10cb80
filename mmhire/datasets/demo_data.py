"""Built-in demo data: small, deterministic sets of rendered scenes in the layouts of COCO,
ADE20K and ImageNet, so that every config family trains and evaluates without a download.

Each scene is a textured background with a few filled shapes (circles, squares, triangles) in
random colours. The same seed always gives the same files, byte for byte.
"""
import json
import os
import shutil
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from mmhire.utils.fileio import write_text_atomic

SHAPES = ('circle', 'square', 'triangle')
#: ADE20K labels (before reduce_zero_label) given to the background and to each shape class:
#: 'wall', 'building' ... are ADE20K's first classes; the demo only needs distinct ids.
ADE_BACKGROUND_LABEL = 1
ADE_SHAPE_LABELS = (2, 3, 4)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.integers(40, 215, size=3)
    noise = rng.normal(0, 12, size=(size, size, 3))
    ramp = np.linspace(-20, 20, size)[None, :, None] * rng.choice([-1, 1])
    return np.clip(base + noise + ramp, 0, 255).astype(np.uint8)


def _shape_polygon(rng: np.random.Generator, kind: str, center: Tuple[float, float],
                   radius: float) -> np.ndarray:
    cx, cy = center
    if kind == 'circle':
        angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    elif kind == 'square':
        angles = np.array([0.25, 0.75, 1.25, 1.75]) * np.pi + rng.uniform(0, np.pi / 2)
    else:
        angles = np.array([0, 2 / 3, 4 / 3]) * np.pi + rng.uniform(0, 2 * np.pi)
    return np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)


def render_scene(rng: np.random.Generator, size: int, max_objects: int = 3) -> Tuple[
        np.ndarray, List[Dict]]:
    """Renders one scene.

    Returns:
        tuple: The BGR image (size, size, 3) and a list of objects, each a dict with
        ``label`` (index into :data:`SHAPES`), ``polygon`` (N x 2 float array) and ``mask``
        (size x size bool array of its visible pixels).
    """
    image = _background(rng, size)
    occupied = np.zeros((size, size), bool)
    objects = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            radius = rng.uniform(0.12, 0.22) * size
            center = rng.uniform(radius, size - radius, size=2)
            label = int(rng.integers(len(SHAPES)))
            polygon = _shape_polygon(rng, SHAPES[label], center, radius)
            mask = np.zeros((size, size), np.uint8)
            cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
            mask = mask.astype(bool)
            if not (mask & occupied).any():
                break
        else:
            continue
        color = rng.integers(0, 256, size=3)
        while np.abs(color - image[mask].mean(axis=0)).max() < 60:
            color = rng.integers(0, 256, size=3)
        image[mask] = color
        occupied |= mask
        objects.append(dict(label=label, polygon=polygon, mask=mask))
    return image, objects


def _reset(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)


def _write_image(path: str, image: np.ndarray) -> None:
    if not cv2.imwrite(path, image):
        raise OSError(f'could not write {path}')


def make_coco_demo(root: str, num_train: int = 200, num_val: int = 50, size: int = 128,
                   seed: int = 0) -> Dict[str, int]:
    """Writes a COCO-format instance-segmentation set: ``root/{train,val}2017/*.jpg`` and
    ``root/annotations/instances_{train,val}2017.json`` with polygon masks.

    Returns:
        dict: Number of images and annotations written per split.
    """
    counts = {}
    for split, number, split_seed in (('train', num_train, seed), ('val', num_val, seed + 1)):
        rng = np.random.default_rng(split_seed)
        image_dir = os.path.join(root, f'{split}2017')
        _reset(image_dir)
        images, annotations = [], []
        for image_id in range(1, number + 1):
            image, objects = render_scene(rng, size)
            file_name = f'{image_id:06d}.jpg'
            _write_image(os.path.join(image_dir, file_name), image)
            images.append(dict(id=image_id, file_name=file_name, height=size, width=size))
            for obj in objects:
                ys, xs = np.nonzero(obj['mask'])
                x0, y0 = float(xs.min()), float(ys.min())
                annotations.append(dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=obj['label'] + 1,
                    segmentation=[np.round(obj['polygon'], 2).ravel().tolist()],
                    area=float(obj['mask'].sum()),
                    bbox=[x0, y0, float(xs.max()) + 1 - x0, float(ys.max()) + 1 - y0],
                    iscrowd=0))
        os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
        ann_path = os.path.join(root, 'annotations', f'instances_{split}2017.json')
        categories = [dict(id=i + 1, name=name, supercategory='shape')
                      for i, name in enumerate(SHAPES)]
        write_text_atomic(ann_path, json.dumps(
            dict(images=images, annotations=annotations, categories=categories)))
        counts[f'{split}_images'] = len(images)
        counts[f'{split}_annotations'] = len(annotations)
    return counts


def make_ade_demo(root: str, num_train: int = 100, num_val: int = 30, size: int = 128,
                  seed: int = 10) -> Dict[str, int]:
    """Writes an ADE20K-layout semantic-segmentation set under ``root``
    (``images/{training,validation}/*.jpg`` and ``annotations/{training,validation}/*.png``)."""
    counts = {}
    for split, number, split_seed in (('training', num_train, seed),
                                      ('validation', num_val, seed + 1)):
        rng = np.random.default_rng(split_seed)
        image_dir = os.path.join(root, 'images', split)
        label_dir = os.path.join(root, 'annotations', split)
        _reset(image_dir)
        _reset(label_dir)
        for index in range(1, number + 1):
            image, objects = render_scene(rng, size)
            label = np.full((size, size), ADE_BACKGROUND_LABEL, np.uint8)
            for obj in objects:
                label[obj['mask']] = ADE_SHAPE_LABELS[obj['label']]
            name = f'ADE_{split}_{index:08d}'
            _write_image(os.path.join(image_dir, name + '.jpg'), image)
            _write_image(os.path.join(label_dir, name + '.png'), label)
        counts[split] = number
    return counts


def make_imagenet_demo(root: str, num_train_per_class: int = 300, num_val_per_class: int = 30,
                       size: int = 64, seed: int = 20,
                       classes: Sequence[str] = SHAPES) -> Dict[str, int]:
    """Writes an ImageNet-layout classification set: ``root/{train,val}/<class>/*.png``, one
    shape per image, labelled by its kind. Each class also has its own colour family (hues
    around 0, 120 and 240 degrees) on a greyish background, so that a small model trained from
    scratch for a few minutes on the CPU gets well above chance."""
    counts = {}
    for split, number, split_seed in (('train', num_train_per_class, seed),
                                      ('val', num_val_per_class, seed + 1)):
        rng = np.random.default_rng(split_seed)
        _reset(os.path.join(root, split))
        for label, name in enumerate(classes):
            class_dir = os.path.join(root, split, name)
            os.makedirs(class_dir)
            for index in range(number):
                gray = _background(rng, size).mean(axis=2, keepdims=True)
                image = np.repeat(gray, 3, axis=2).astype(np.uint8)
                radius = rng.uniform(0.2, 0.4) * size
                center = rng.uniform(radius, size - radius, size=2)
                polygon = _shape_polygon(rng, SHAPES[label % len(SHAPES)], center, radius)
                hue = (label * 60 + rng.integers(-12, 13)) % 180  # OpenCV hues are 0..179
                hsv = np.uint8([[[hue, rng.integers(150, 256), rng.integers(120, 256)]]])
                color = [int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]]
                cv2.fillPoly(image, [np.round(polygon).astype(np.int32)], color)
                _write_image(os.path.join(class_dir, f'{name}_{index:05d}.png'), image)
        counts[split] = number * len(classes)
    return counts


def make_demo_data(root: str = 'data/demo', which: Sequence[str] = ('coco', 'ade', 'imagenet'),
                   seed: int = 0) -> Dict[str, Dict[str, int]]:
    """Writes the chosen demo sets under ``root`` (``coco/``, ``ade/ADEChallengeData2016/``,
    ``imagenet/``), replacing earlier copies. Returns what each writer reported."""
    writers = {
        'coco': lambda: make_coco_demo(os.path.join(root, 'coco'), seed=seed),
        'ade': lambda: make_ade_demo(os.path.join(root, 'ade', 'ADEChallengeData2016'),
                                     seed=seed + 10),
        'imagenet': lambda: make_imagenet_demo(os.path.join(root, 'imagenet'), seed=seed + 20),
    }
    unknown = [w for w in which if w not in writers]
    if unknown:
        raise ValueError(f'unknown demo set(s) {unknown}; choose from {sorted(writers)}')
    return {name: writers[name]() for name in which}

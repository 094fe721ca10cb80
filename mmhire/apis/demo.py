"""The main job on built-in demo data: generate it, evaluate an untrained model, train, evaluate
again, and write a picture of the predictions and a loss curve."""
import glob
import json
import os
import os.path as osp
import time
from typing import Dict, List

import cv2
import numpy as np

from mmhire.datasets.demo_data import make_ade_demo, make_coco_demo, make_imagenet_demo
from mmhire.engine.runtime import build_runner, prepare_train_config
from mmhire.utils.config import load_config
from mmhire.utils.paths import config_dir

from .inference import inference_and_draw

TASKS = {
    'det': dict(config='mask_rcnn_hire_t_coco_demo.py', data='coco',
                metrics=['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP',
                         'coco/segm_mAP_50'],
                images='coco/val2017/*.jpg'),
    'seg': dict(config='upernet_hire_t_ade20k_demo.py', data='ade',
                metrics=['mIoU', 'aAcc', 'mAcc'],
                images='ade/ADEChallengeData2016/images/validation/*.jpg'),
    'cls': dict(config='hire_t_in1k_demo.py', data='imagenet', metrics=['accuracy/top1'],
                images='imagenet/val/*/*.png'),
}
_MAKERS = {
    'coco': (make_coco_demo, 'coco', 'coco/annotations/instances_val2017.json'),
    'ade': (make_ade_demo, 'ade/ADEChallengeData2016',
            'ade/ADEChallengeData2016/annotations/validation'),
    'imagenet': (make_imagenet_demo, 'imagenet', 'imagenet/val'),
}


def ensure_demo_data(data_root: str, which: str) -> bool:
    """Generates one demo set under ``data_root`` unless it is already there; returns whether
    it was generated."""
    maker, subdir, marker = _MAKERS[which]
    if osp.exists(osp.join(data_root, marker)):
        return False
    maker(osp.join(data_root, subdir))
    return True


def _loss_curve(work_dir: str, out_file: str, title: str) -> int:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    entries = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            entries += [json.loads(line) for line in f if line.strip()]
    entries = [e for e in entries if 'loss' in e and 'step' in e]
    if not entries:
        raise RuntimeError(f'no training losses were logged under {work_dir}')
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [e['step'] for e in entries]
    for key in sorted({k for e in entries for k in e if k.startswith('loss')}):
        ax.plot(steps, [e.get(key, np.nan) for e in entries], label=key,
                linewidth=2.2 if key == 'loss' else 1.0)
    ax.set_xlabel('iteration')
    ax.set_ylabel('loss')
    ax.set_yscale('log')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f'training loss: {title}')
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return len(entries)


def _grid(files: List[str], out_file: str, height: int = 256) -> None:
    tiles = []
    for path in files:
        image = cv2.imread(path)
        scale = height / image.shape[0]
        tiles.append(cv2.resize(image, (max(1, round(image.shape[1] * scale)), height)))
    cv2.imwrite(out_file, np.concatenate(tiles, axis=1))


def _number(value):
    """Metrics as plain floats (mmseg reports numpy scalars)."""
    return None if value is None else round(float(value), 4)


def _latest_checkpoint(work_dir: str) -> str:
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def run_demo(task: str = 'det', data_root: str = 'data/demo', work_dir: str = 'work_dirs/demo',
             num_pictures: int = 4, cfg_options: dict = None) -> Dict[str, object]:
    """Runs the demo job of ``task`` (``det``: Mask R-CNN, ``seg``: UperNet, ``cls``: the
    classifier), all on the CPU unless a GPU is visible.

    Returns:
        dict: The metrics before and after training and the files written.
    """
    if task not in TASKS:
        raise ValueError(f'unknown demo task {task!r}; choose from {sorted(TASKS)}')
    spec = TASKS[task]
    generated = ensure_demo_data(data_root, spec['data'])
    config = osp.join(config_dir(), 'demo', spec['config'])
    task_dir = osp.join(work_dir, task)
    os.makedirs(task_dir, exist_ok=True)
    options = dict(cfg_options or {})
    if data_root != 'data/demo':
        raise ValueError('the demo configs read data/demo; run from the folder that holds it')

    untrained_cfg = load_config(config, options)
    prepare_train_config(untrained_cfg, config_path=config, work_dir=osp.join(task_dir,
                                                                              'untrained'))
    untrained_cfg.experiment_name = f'{task}_untrained'
    runner = build_runner(untrained_cfg)
    runner.model.init_weights()
    before = runner.test()

    cfg = load_config(config, options)
    prepare_train_config(cfg, config_path=config, work_dir=osp.join(task_dir, 'train'))
    cfg.experiment_name = f'{task}_train'
    # evaluated once, after training, by the test loop: the validation at the end of the
    # config's schedule would compute the same metrics on the same images again
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    runner = build_runner(cfg)
    start = time.time()
    runner.train()
    train_seconds = time.time() - start
    after = runner.test()
    checkpoint = _latest_checkpoint(cfg.work_dir)

    loss_png = osp.join(task_dir, 'loss_curve.png')
    logged = _loss_curve(cfg.work_dir, loss_png, spec['config'])
    images = sorted(glob.glob(osp.join(data_root, spec['images'])))
    images = images[::max(1, len(images) // max(num_pictures, 1))][:num_pictures]  # spread out
    drawn = []
    for index, image in enumerate(images):
        out = osp.join(task_dir, 'predictions', f'{index:02d}.png')
        inference_and_draw(cfg, checkpoint, image, out, score_thr=0.5)
        drawn.append(out)
    pictures_png = osp.join(task_dir, 'predictions.png')
    _grid(drawn, pictures_png)

    summary = dict(
        task=task, config=config, data_generated=generated, checkpoint=checkpoint,
        train_seconds=round(train_seconds, 1), logged_iterations=logged,
        untrained={k: _number(before.get(k)) for k in spec['metrics']},
        trained={k: _number(after.get(k)) for k in spec['metrics']},
        loss_curve=loss_png, predictions=pictures_png)
    with open(osp.join(task_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    return summary

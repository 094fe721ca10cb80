"""Checks of a model deployed by :func:`mmhire.deployment.deploy.deploy` against the PyTorch model
it came from: at sizes other than the export size, and by the metrics of a test set.

- classifiers: the largest difference of the class scores, relative to the largest score;
- segmentors: the share of pixels given the same class;
- detectors: PyTorch's top detections found again in the deployed model's (same label,
  box IoU, score difference, mask pixels agreeing);
- any of them: the test set's metrics from mmdeploy's test runner, for both models.
"""
import copy
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config

from .deploy import BACKEND_FILES, backend_of
from .export import onnx_session

Size = Tuple[int, int]


def backend_files(onnx_path: str, deploy_cfg: Optional[Config] = None) -> List[str]:
    """The files mmdeploy's backend model of a deployment loads: ``end2end.onnx`` for ONNX
    Runtime, the backend's own files beside it for another (OpenVINO's ``end2end.xml`` and
    ``.bin``)."""
    own = BACKEND_FILES.get(backend_of(deploy_cfg))
    return [osp.join(osp.dirname(onnx_path), name) for name in own] if own else [onnx_path]


class OpenVINOBackend(torch.nn.Module):
    """The OpenVINO model of a deployment (``end2end.xml``) run by OpenVINO's current API in
    float32, in place of mmdeploy's OpenVINO wrapper in its backend models: that wrapper uses
    OpenVINO's legacy ``IECore`` API, which cannot return outputs whose size depends on the
    data (a detector's ``dets``: "blob with name `dets` is not allocated"), and it computes
    in bf16 on CPUs with bf16 instructions. Called as mmdeploy calls its wrappers."""

    def __init__(self, xml_path: str, output_names: Sequence[str]) -> None:
        super().__init__()
        from .serve import openvino_model
        self.run = openvino_model(xml_path, 'f32')
        self.output_names = list(output_names)

    def forward(self, inputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        outputs = self.run(next(iter(inputs.values())).detach().cpu().numpy())
        return {name: torch.from_numpy(np.asarray(value)) for name, value in outputs.items()}

    def output_to_list(self, outputs: Dict[str, torch.Tensor]) -> List[torch.Tensor]:
        return [outputs[name] for name in self.output_names]


def backend_runner(onnx_path: str, deploy_cfg: Optional[Config] = None
                   ) -> Callable[[np.ndarray], List[np.ndarray]]:
    """The deployed model as ``input -> outputs``: ONNX Runtime on ``end2end.onnx``, or
    OpenVINO on ``end2end.xml`` in float32 (as :class:`OpenVINOBackend`)."""
    if backend_of(deploy_cfg) == 'openvino':
        from .serve import openvino_model
        names = list(deploy_cfg.onnx_config.output_names)
        run = openvino_model(backend_files(onnx_path, deploy_cfg)[0], 'f32')
        return lambda x: [run(x)[name] for name in names]
    session = onnx_session(onnx_path)
    return lambda x: session.run(None, {'input': x})


def classifier_agreement(model: torch.nn.Module, onnx_path: str, sizes: Sequence[Size],
                         batch: int = 2, seed: int = 0,
                         deploy_cfg: Optional[Config] = None) -> List[Tuple[Size, float]]:
    """Per size: the largest difference between the deployed class scores (mmdeploy's
    classifier ends in a softmax) and PyTorch's, relative to PyTorch's largest score, on
    random normalised images of that size. The deployed model is ``onnx_path`` in ONNX
    Runtime, or the backend model of ``deploy_cfg`` beside it (:func:`backend_runner`)."""
    run = backend_runner(onnx_path, deploy_cfg)
    generator = torch.Generator().manual_seed(seed)
    results = []
    for height, width in sizes:
        x = torch.randn(batch, 3, height, width, generator=generator)
        got = torch.from_numpy(run(x.numpy())[0])
        with torch.no_grad():
            expected = F.softmax(model(x, mode='tensor'), dim=1)
        results.append(((height, width),
                        float((got - expected).abs().max() / expected.abs().max())))
    return results


def segmentor_agreement(model: torch.nn.Module, onnx_path: str, sizes: Sequence[Size],
                        seed: int = 0, deploy_cfg: Optional[Config] = None
                        ) -> List[Tuple[Size, float]]:
    """Per size: the share of pixels to which the deployed model (mmdeploy's segmentor,
    argmax in the graph; ``onnx_path`` or the backend model of ``deploy_cfg``) gives the
    class PyTorch's ``encode_decode`` gives, on a random normalised image of that size."""
    run = backend_runner(onnx_path, deploy_cfg)
    generator = torch.Generator().manual_seed(seed)
    results = []
    for height, width in sizes:
        x = torch.randn(1, 3, height, width, generator=generator)
        got = torch.from_numpy(run(x.numpy())[0])[:, 0]
        with torch.no_grad():
            logits = model.encode_decode(x, [dict(img_shape=(height, width))])
        expected = logits.argmax(1)
        if got.shape != expected.shape:
            raise RuntimeError(f'the ONNX class map is {tuple(got.shape)} for a {height}x'
                               f'{width} input; PyTorch\'s is {tuple(expected.shape)}')
        results.append(((height, width), float((got == expected).float().mean())))
    return results


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4), x1y1x2y2."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def match_detections(expected, got, top: int = 10) -> Dict[str, float]:
    """Finds each of the ``top`` highest-scoring detections of ``expected`` (mmdet
    ``InstanceData``: bboxes, scores, labels, masks) among ``got``'s of the same label, by
    box IoU, and reports the worst IoU, score difference and mask agreement (the share of
    the image's pixels on which the two masks agree) over them."""
    order = expected.scores.argsort(descending=True)[:top]
    report = dict(compared=int(order.numel()), matched=0, min_iou=1., max_score_diff=0.,
                  min_mask_agreement=1.)
    if order.numel() == 0:
        return report
    got_boxes = got.bboxes.float()
    for i in order.tolist():
        same = (got.labels == expected.labels[i]).nonzero().flatten()
        if same.numel() == 0:
            report['min_iou'] = 0.
            continue
        ious = box_iou(expected.bboxes[i:i + 1].float(), got_boxes[same])[0]
        best = int(ious.argmax())
        j = int(same[best])
        report['matched'] += 1
        report['min_iou'] = min(report['min_iou'], float(ious[best]))
        report['max_score_diff'] = max(report['max_score_diff'],
                                       float((expected.scores[i] - got.scores[j]).abs()))
        if 'masks' in expected and 'masks' in got:
            a, b = torch.as_tensor(expected.masks[i]), torch.as_tensor(got.masks[j])
            report['min_mask_agreement'] = min(report['min_mask_agreement'],
                                               float((a.bool() == b.bool()).float().mean()))
    return report


def resized_to(model_cfg: Config, size: Size) -> Config:
    """A copy of ``model_cfg`` whose test pipelines resize every image to ``size`` (H, W)
    exactly."""
    cfg = copy.deepcopy(model_cfg)
    pipelines = [cfg.get('test_pipeline'),
                 cfg.get('test_dataloader', {}).get('dataset', {}).get('pipeline')]
    for pipeline in pipelines:
        for transform in pipeline or []:
            if str(transform.get('type', '')).split('.')[-1] == 'Resize':
                transform.update(scale=(size[1], size[0]), keep_ratio=False)
    return cfg


class DeployedPair:
    """The PyTorch model and the deployed model of one deployment (ONNX Runtime's or
    OpenVINO's, by the deploy config), fed the same inputs by mmdeploy's task processor (the
    config's test pipeline)."""

    def __init__(self, model_cfg: Config, deploy_cfg: Config, checkpoint: str,
                 onnx_path: str, device: str = 'cpu') -> None:
        from mmdeploy.apis import build_task_processor

        self.model_cfg, self.deploy_cfg = model_cfg, deploy_cfg
        self.processor = build_task_processor(copy.deepcopy(model_cfg),
                                              copy.deepcopy(deploy_cfg), device)
        self.torch_model = self.processor.build_pytorch_model(checkpoint).eval()
        self.backend_model = self.processor.build_backend_model(
            backend_files(onnx_path, deploy_cfg),
            data_preprocessor_updater=self.processor.update_data_preprocessor)
        if backend_of(deploy_cfg) == 'openvino':
            self.backend_model.wrapper = OpenVINOBackend(
                backend_files(onnx_path, deploy_cfg)[0], deploy_cfg.onnx_config.output_names)

    def predict(self, image: np.ndarray, input_size: Optional[Size] = None):
        """Both models' results for one BGR image: (PyTorch's, the ONNX model's, the input
        size the test pipeline made). With ``input_size`` (H, W), the test pipeline's resize
        makes the image exactly that size."""
        saved = self.processor.model_cfg
        if input_size is not None:
            self.processor.model_cfg = resized_to(saved, input_size)
        try:
            data, _ = self.processor.create_input(image, None)
        finally:
            self.processor.model_cfg = saved
        with torch.no_grad():
            expected = self.torch_model.test_step(copy.deepcopy(data))[0]
            got = self.backend_model.test_step(data)[0]
        return expected, got, tuple(expected.metainfo.get('batch_input_shape',
                                                          expected.metainfo['img_shape']))

    def evaluate(self, work_dir: str) -> Tuple[Dict[str, float], Dict[str, float]]:
        """The config's test set metrics of the PyTorch model and of the ONNX model, each from
        mmdeploy's test runner (the config's ``test_dataloader`` and ``test_evaluator``)."""
        metrics = []
        for name, model in (('pytorch', self.torch_model), ('onnx', self.backend_model)):
            runner = self.processor.build_test_runner(
                model, f'{work_dir}/{name}', log_file=None, show=False, show_dir=None,
                wait_time=0, interval=1000,
                dataloader=copy.deepcopy(self.model_cfg.test_dataloader))
            metrics.append(dict(runner.test()))
        return metrics[0], metrics[1]


__all__ = ['DeployedPair', 'backend_files', 'backend_runner', 'box_iou',
           'classifier_agreement', 'match_detections', 'OpenVINOBackend', 'resized_to',
           'segmentor_agreement']

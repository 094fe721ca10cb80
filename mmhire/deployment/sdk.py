"""mmdeploy's SDK (``mmdeploy_runtime``, ``pip install mmdeploy-runtime==1.3.1``) on the work
dir of ``python -m mmhire deploy``: its ``Classifier`` and ``Segmentor`` read ``deploy.json``
and ``pipeline.json``, preprocess and postprocess in C++, and give results at the image's
size, which this module turns into the libraries' data samples.

Its ``Detector`` is refused: on the CPU, mmdeploy-runtime 1.3.0 and 1.3.1 (the only versions
for Python 3.11) return different results for the same image from one call to the next (a
new ``Detector`` often gives no detection or boxes with labels like -1699476736 and scores of
1e30 on its first call, and later calls now and then), for mmhire's Mask R-CNN as for a
ResNet-18 Mask R-CNN exported by mmdeploy alone, where ONNX Runtime on the same
``end2end.onnx`` gives PyTorch's detections every time (docs/deployment.md).
"""
from typing import Any, Dict

import numpy as np
import torch

#: What the SDK serves, by library.
SDK_TASKS = {'mmpretrain': 'Classifier', 'mmseg': 'Segmentor'}
#: Why the SDK's Detector is not used.
DETECTOR_FAULT = (
    "mmdeploy's SDK (mmdeploy-runtime 1.3.0 and 1.3.1) does not serve detectors reliably on "
    'the CPU: its Detector returns different results for the same image from call to call '
    '(none, or boxes with garbage labels and scores), whatever the backbone. Serve the '
    'detector with --runtime onnxruntime or --runtime openvino, which run the same '
    'end2end.onnx and give PyTorch\'s detections')


def import_sdk():
    """``mmdeploy_runtime``, or an ImportError that says how to install it."""
    try:
        import mmdeploy_runtime
    except ImportError:
        raise ImportError("mmdeploy's SDK is not installed here: pip install "
                          'mmdeploy-runtime==1.3.1 (`make setup-deploy` installs it in '
                          '.venv-deploy)') from None
    return mmdeploy_runtime


def sdk_predict(contract: Dict[str, Any], work_dir: str, image: np.ndarray):
    """The SDK's prediction for the RGB ``image`` by the model in ``work_dir``, as the
    library's data sample at the image's size.

    A classifier's SDK returns its top-k classes only (``topk`` of the head's config): the
    sample's ``pred_score`` holds their scores and zero for the other classes."""
    from .serve import ServeError

    library = contract['library']
    if library not in SDK_TASKS:
        raise ServeError(DETECTOR_FAULT)
    runtime = import_sdk()
    model = getattr(runtime, SDK_TASKS[library])(model_path=work_dir, device_name='cpu',
                                                 device_id=0)
    bgr = np.ascontiguousarray(image[..., ::-1])
    if library == 'mmpretrain':
        from mmpretrain.structures import DataSample
        ranked = model(bgr)
        classes = contract.get('classes') or []
        count = max([len(classes), contract['data_preprocessor'].get('num_classes') or 0,
                     *(int(label) + 1 for label, _ in ranked)])
        scores = torch.zeros(count)
        for label, score in ranked:
            scores[int(label)] = float(score)
        return DataSample().set_pred_score(scores).set_pred_label(int(ranked[0][0]))
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    sample = SegDataSample()
    sample.pred_sem_seg = PixelData(data=torch.from_numpy(
        np.asarray(model(bgr), dtype=np.int64))[None])
    return sample


__all__ = ['DETECTOR_FAULT', 'SDK_TASKS', 'import_sdk', 'sdk_predict']

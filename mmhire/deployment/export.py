"""ONNX export of HireMLP (the backbone, or a whole classifier or segmentor) with dynamic batch,
height and width, and the check of an exported file against PyTorch in onnxruntime.

HireMLP's forward computes its pads, crops and reshapes from the tensor's size, so one
exported graph serves every input size: the exporter records them as ``Shape``/``Range``
nodes, not as numbers of the example input.
"""
from contextlib import nullcontext
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mmhire.utils.compat import (
    dynamo_exporter_available,
    import_runtime,
    torchscript_export_kwargs,
)
from mmhire.utils.fileio import write_atomic

from .any_size import any_size_mmseg

#: The exporters: ``'torchscript'`` (every supported torch) and ``'dynamo'`` (torch.export,
#: torch >= 2.6, with the ``onnxscript`` package).
EXPORTERS = ('torchscript', 'dynamo')


class ClassifierScores(nn.Module):
    """An mmpretrain classifier as a plain ``images -> class probabilities`` module: the
    softmax of the head's logits (a sigmoid for multi-label heads), which is mmpretrain's
    ``pred_score`` and what mmdeploy's exported classifiers give, so that a file of either
    route serves the same kind of scores."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier
        self.multi_label = 'MultiLabel' in type(getattr(classifier, 'head', None)).__name__

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(x, mode='tensor')
        return logits.sigmoid() if self.multi_label else logits.softmax(dim=-1)


class NormalizeInGraph(nn.Module):
    """``model`` fed ``(x - mean) / std``: its exported graph takes 0-255 pixel values in the
    model's channel order, with the normalisation of its data preprocessor inside."""

    def __init__(self, model: nn.Module, mean, std) -> None:
        super().__init__()
        self.model = model
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def unwrapped(model: nn.Module) -> nn.Module:
    """The model inside a :class:`NormalizeInGraph`, or ``model``."""
    return model.model if isinstance(model, NormalizeInGraph) else model


class SegmentorClassMap(nn.Module):
    """An mmseg segmentor as a plain ``images -> class map`` module: the class of every pixel
    (B, 1, H, W), at the input's size, as mmseg's ``predict`` gives it without rescaling; with
    ``logits=True``, the class scores (B, classes, H, W) instead, which a server resizes to
    the image's size before taking the best class, as mmseg does.

    Exported with :func:`export_onnx`, mmseg's ``Upsample`` and ``PPM`` run the forwards of
    :mod:`mmhire.deployment.any_size`, so the file serves every size."""

    def __init__(self, segmentor: nn.Module, logits: bool = False) -> None:
        super().__init__()
        self.segmentor = segmentor
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.segmentor.encode_decode(x, [dict(img_shape=x.shape[2:])])
        return logits if self.logits else logits.argmax(dim=1, keepdim=True)


def output_names(model: nn.Module) -> List[str]:
    """``out0`` .. ``outN`` for a backbone, ``classes`` for a segmentor's class map and
    ``scores`` for a classifier (or any other model without the backbone's
    ``out_indices``)."""
    model = unwrapped(model)
    if isinstance(model, SegmentorClassMap):
        return ['logits' if model.logits else 'classes']
    if isinstance(model, ClassifierScores) or not hasattr(model, 'out_indices'):
        return ['scores']
    return [f'out{i}' for i in range(len(model.out_indices))]


def export_onnx(model: nn.Module, example: torch.Tensor, path: str,
                opset: Optional[int] = None, exporter: str = 'torchscript',
                contract: Optional[Dict] = None) -> None:
    """Writes ``model`` (in eval mode) as an ONNX file whose input ``input`` has dynamic
    batch, height and width, and whose outputs are named by :func:`output_names`. ``opset``
    defaults to 17 for the TorchScript exporter and 18 (its own) for the dynamo one.

    With ``contract`` (:func:`mmhire.deployment.contract.input_contract`), the file states
    it in its metadata. The file is written next to ``path`` first and renamed into place
    (:func:`mmhire.utils.fileio.write_atomic`), so an export that fails leaves nothing
    behind.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f'exporter={exporter!r}: choose one of {", ".join(EXPORTERS)}')
    names = output_names(model)
    if opset is None:
        opset = 18 if exporter == 'dynamo' else 17
    options: Dict = dict(opset_version=opset, input_names=['input'], output_names=names)
    if exporter == 'dynamo':
        available, why = dynamo_exporter_available()
        if not available:
            raise RuntimeError(why)
        from torch.export import Dim

        # Dim.DYNAMIC: sizes that may take any value; torch.export records the checks the
        # graph makes on them (a map or region count of 1 below 67 pixels, ...) instead of
        # refusing the export. A batch of 1 would be specialised: export with two images.
        if example.size(0) == 1:
            example = torch.cat([example, example])
        shapes = {'x': {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}}
        options.update(dynamo=True, dynamic_shapes=shapes, external_data=False)
    else:
        options.update(torchscript_export_kwargs())
        axes = {0: 'batch', 2: 'height', 3: 'width'}
        # class scores have a batch axis only; feature maps all three
        out_axes = {0: 'batch'} if names == ['scores'] else axes
        options['dynamic_axes'] = {'input': axes, **{n: out_axes for n in names}}
    heads = (any_size_mmseg() if isinstance(unwrapped(model), SegmentorClassMap)
             else nullcontext())

    def write(partial: str) -> None:
        with torch.no_grad(), heads:
            torch.onnx.export(model.eval(), (example, ), partial, **options)
        if contract is not None:
            from .contract import write_contract
            write_contract(partial, contract)

    write_atomic(path, write)


def parse_size(text: str) -> Tuple[int, int]:
    """``'800x1216'`` -> ``(800, 1216)``, for the tools' ``--check-sizes``."""
    import argparse
    try:
        height, width = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a size HxW, e.g. 800x1216') from None
    return height, width


def onnx_opset(path: str) -> int:
    """The default-domain opset of the ONNX file at ``path``."""
    onnx = import_runtime('onnx', 'reading an ONNX file')
    model = onnx.load(path, load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ('', 'ai.onnx'))


def onnx_session(path: str):
    """An onnxruntime CPU session on ``path``."""
    onnxruntime = import_runtime('onnxruntime', 'running an ONNX file')
    return onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])


def max_relative_difference(model: nn.Module, session, x: torch.Tensor) -> float:
    """Largest difference between the ONNX file's outputs and PyTorch's for input ``x``, over
    all outputs, each relative to the largest absolute value of PyTorch's output; for a
    :class:`SegmentorClassMap`, the share of pixels whose class differs."""
    got = session.run(None, {'input': x.numpy()})
    with torch.no_grad():
        expected = model(x)
    if isinstance(expected, torch.Tensor):
        expected = (expected, )
    if len(got) != len(expected):
        raise RuntimeError(f'the ONNX file has {len(got)} outputs, PyTorch {len(expected)}')
    worst = 0.
    for g, e in zip(got, expected):
        if tuple(g.shape) != tuple(e.shape):
            raise RuntimeError(f'ONNX output of shape {tuple(g.shape)} where PyTorch gives '
                               f'{tuple(e.shape)} for input {tuple(x.shape)}')
        g = torch.from_numpy(g)
        if isinstance(unwrapped(model), SegmentorClassMap) and not unwrapped(model).logits:
            worst = max(worst, float((g != e).float().mean()))
            continue
        scale = float(e.abs().max()) or 1.
        worst = max(worst, float((g - e).abs().max()) / scale)
    return worst


def check_sizes(model: nn.Module, path: str, sizes: Sequence[Tuple[int, int]],
                batch: int = 1, seed: int = 0) -> List[Tuple[Tuple[int, int], float]]:
    """Runs the ONNX file at every size of ``sizes`` on random inputs and returns each size
    with its :func:`max_relative_difference` to PyTorch."""
    session = onnx_session(path)
    generator = torch.Generator().manual_seed(seed)
    results = []
    for height, width in sizes:
        x = torch.randn(batch, 3, height, width, generator=generator)
        results.append(((height, width), max_relative_difference(model, session, x)))
    return results


__all__ = ['ClassifierScores', 'EXPORTERS', 'NormalizeInGraph', 'SegmentorClassMap', 'check_sizes',
           'dynamo_exporter_available', 'export_onnx', 'max_relative_difference',
           'onnx_opset', 'onnx_session', 'output_names', 'parse_size', 'unwrapped']

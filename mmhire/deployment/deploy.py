"""Deployment through mmdeploy: an mmhire model config and checkpoint -> ``end2end.onnx`` and
mmdeploy's SDK meta files (``deploy.json``, ``pipeline.json``, ``detail.json``), with mmhire's
deploy configs (``configs/deploy/``) chosen by the model's library.

mmdeploy 1.3 rewrites models while the TorchScript ONNX exporter traces them, which ties it to
the torch 2.1 era; ``make setup-deploy`` builds that environment (``.venv-deploy``).
"""
import copy
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config

from mmhire.utils.compat import MMDEPLOY_TESTED_TORCH, mmdeploy_supports_torch
from mmhire.utils.fileio import publish

#: The deploy config each library's models get unless another is named.
DEFAULT_DEPLOY_CONFIGS = {
    'mmpretrain': 'classification_onnxruntime_dynamic',
    'mmseg': 'segmentation_onnxruntime_dynamic',
    'mmdet': 'instance-seg_onnxruntime_dynamic',
}
#: The codebase (``codebase_config.type``) of each library's deploy configs.
CODEBASES = {'mmpretrain': 'mmpretrain', 'mmseg': 'mmseg', 'mmdet': 'mmdet'}
#: The files a deployment writes into its work dir.
OUTPUT_FILES = ('end2end.onnx', 'deploy.json', 'pipeline.json', 'detail.json')
#: The backend's own model files, which its conversion writes beside ``end2end.onnx``.
BACKEND_FILES = {'onnxruntime': (), 'openvino': ('end2end.xml', 'end2end.bin')}


class DeployError(RuntimeError):
    """A deployment that cannot run, with what to do about it."""


def list_deploy_configs() -> List[str]:
    """mmhire's deploy configs, by name (the file name without ``.py``)."""
    from mmhire.utils.paths import list_configs
    return [name[:-3] for name in list_configs('deploy')]


def resolve_deploy_config(name: str) -> str:
    """A deploy config file: ``name`` itself when it is a file, else mmhire's deploy config of
    that name (``segmentation_onnxruntime_static-512x512``)."""
    from mmhire.utils.paths import resolve_config
    try:
        return resolve_config(name, 'deploy')
    except FileNotFoundError as error:
        raise DeployError(str(error)) from None


def check_environment(backend: str = 'onnxruntime') -> None:
    """Stops with the fix when mmdeploy, ONNX Runtime or the backend's converter is missing,
    or torch is too new."""
    if not mmdeploy_supports_torch():
        raise DeployError(
            f'mmdeploy cannot export with torch {torch.__version__}: its model rewrites hook '
            'the TorchScript ONNX exporter, and from torch 2.9 torch.onnx.export uses the '
            'dynamo exporter. Deploy in the deployment environment (torch '
            f'{MMDEPLOY_TESTED_TORCH}): '
            '`make setup-deploy`, then `.venv-deploy/bin/python -m mmhire deploy ...`; or, on '
            'this torch, export the backbone or classifier with '
            '`python tools/deployment/export_onnx.py` (docs/deployment.md)')
    missing = []
    for package in ('mmdeploy', 'onnxruntime', 'onnx'):
        try:
            __import__(package)
        except ImportError:
            missing.append(package)
    missing += missing_converter(backend)
    if missing:
        raise DeployError(
            f'{", ".join(missing)} {"is" if len(missing) == 1 else "are"} not installed here. '
            '`make setup-deploy` builds the deployment environment (the torch 2.1 stack with '
            'mmdeploy 1.3.1, onnxruntime 1.15.1, onnx 1.14.1, protobuf 3.20.2, openvino-dev '
            '2023.3) in .venv-deploy; run `.venv-deploy/bin/python -m mmhire deploy ...` there')


def backend_of(deploy_cfg: Optional[Config]) -> str:
    """The deploy config's backend (``onnxruntime`` without a config)."""
    if deploy_cfg is None:
        return 'onnxruntime'
    return str((deploy_cfg.get('backend_config') or {}).get('type', 'onnxruntime'))


def missing_converter(backend: str) -> List[str]:
    """What the backend's conversion needs and this environment lacks."""
    if backend == 'openvino' and not model_optimizer():
        return ['openvino-dev 2023.3 (its Model Optimizer, `mo`)']
    return []


def model_optimizer() -> Optional[str]:
    """OpenVINO's Model Optimizer (``mo``) of this Python's environment or on PATH, which
    mmdeploy's OpenVINO conversion runs; None where there is none."""
    import sys
    beside = osp.join(osp.dirname(sys.executable), 'mo')
    return beside if osp.isfile(beside) else shutil.which('mo')


def convert_to_openvino(work_dir: str, deploy_cfg: Config) -> None:
    """mmdeploy's OpenVINO conversion of ``work_dir/end2end.onnx`` into ``end2end.xml`` and
    ``end2end.bin``, at the deploy config's ``model_inputs`` shape (mmdeploy's OpenVINO
    wrapper reshapes the model to each input's size)."""
    from mmdeploy.apis.openvino import (
        from_onnx,
        get_input_info_from_cfg,
        get_mo_options_from_cfg,
    )

    # mmdeploy runs `mo` through the shell: this environment's first, activated or not
    path = os.environ.get('PATH', '')
    os.environ['PATH'] = osp.dirname(model_optimizer()) + os.pathsep + path
    try:
        from_onnx(osp.join(work_dir, OUTPUT_FILES[0]), work_dir,
                  get_input_info_from_cfg(deploy_cfg),
                  list(deploy_cfg.onnx_config.output_names),
                  get_mo_options_from_cfg(deploy_cfg))
    except Exception as error:  # noqa: BLE001 (mo's CalledProcessError, mmdeploy's own)
        detail = getattr(error, 'stderr', b'') or b''
        raise DeployError(f'OpenVINO\'s Model Optimizer failed: {error} '
                          f'{detail.decode(errors="replace")[-2000:]}') from error
    finally:
        os.environ['PATH'] = path


def find_backbone(model_cfg: Config) -> Optional[dict]:
    """The model's HireMLP backbone config, or None."""
    backbone = model_cfg.get('model', {}).get('backbone')
    if isinstance(backbone, dict) and str(backbone.get('type', '')).split('.')[-1] == 'HireMLP':
        return backbone
    return None


def check_model_config(model_cfg: Config, deploy_cfg: Config, config_name: str) -> str:
    """The model's library, after checking that the config is an mmhire model of a library
    the deploy config's codebase serves."""
    from mmhire.utils.config import model_library

    if 'model' not in model_cfg:
        raise DeployError(f'{config_name} has no `model`: give a model config (an mmhire '
                          'config or your own with a HireMLP backbone)')
    if find_backbone(model_cfg) is None:
        backbone = model_cfg.model.get('backbone', {})
        what = backbone.get('type') if isinstance(backbone, dict) else None
        raise DeployError(
            f'{config_name} is not an mmhire model: its backbone is {what!r}, not HireMLP. '
            'mmhire deploys HireMLP models; use mmdeploy\'s own tools/deploy.py for others')
    library = model_library(model_cfg)
    if library not in DEFAULT_DEPLOY_CONFIGS:
        raise DeployError(f'{config_name} has default_scope={library!r}; mmhire deploys '
                          f'models of {", ".join(DEFAULT_DEPLOY_CONFIGS)}')
    codebase = deploy_cfg.get('codebase_config', {}).get('type')
    if codebase != CODEBASES[library]:
        raise DeployError(
            f'the deploy config is for {codebase!r} models and {config_name} is an {library} '
            f'model: use {DEFAULT_DEPLOY_CONFIGS[library]} (or leave --deploy-cfg out)')
    if library == 'mmdet' and deploy_cfg.codebase_config.get('task') == 'ObjectDetection' \
            and 'masks' in deploy_cfg.onnx_config.get('output_names', []) \
            and not _has_mask_head(model_cfg):
        raise DeployError(f'{config_name} has no mask head, and the deploy config exports '
                          'masks: use a detection deploy config of your own without `masks` '
                          'in onnx_config.output_names')
    if library == 'mmdet':
        check_cascade(model_cfg, deploy_cfg, config_name)
    return library


def check_cascade(model_cfg: Config, deploy_cfg: Config, config_name: str) -> None:
    """mmdeploy 1.3's Cascade R-CNN rewrite refines boxes between stages only with
    class-agnostic regression (it asserts it). mmhire's rewrite for ONNX Runtime and OpenVINO
    handles class-aware regression too; for other backends, stop before exporting."""
    heads = (model_cfg.model.get('roi_head') or {}).get('bbox_head')
    if not isinstance(heads, (list, tuple)):
        return
    aware = [i for i, head in enumerate(heads[:-1]) if not head.get('reg_class_agnostic')]
    backend = backend_of(deploy_cfg)
    if aware and backend not in ('onnxruntime', 'openvino'):
        raise DeployError(
            f'{config_name} is a Cascade R-CNN whose stages {aware} regress boxes per class '
            f'(reg_class_agnostic=False); for {backend!r}, mmdeploy 1.3 exports Cascade R-CNN '
            'only with class-agnostic regression in every stage but the last (mmhire\'s '
            'rewrite covers ONNX Runtime and OpenVINO). Deploy to onnxruntime or openvino, or '
            'train with reg_class_agnostic=True in those stages')


def _has_mask_head(model_cfg: Config) -> bool:
    roi_head = model_cfg.model.get('roi_head') or {}
    return bool(roi_head.get('mask_head'))


def check_checkpoint(checkpoint: str, model: torch.nn.Module) -> None:
    """Stops unless ``checkpoint`` is a readable file whose weights fit ``model`` (the same
    parameter names and shapes: mmdeploy would otherwise export the missing ones as they were
    initialised and only warn)."""
    from mmhire.utils.checkpoint import checkpoint_misfit, safe_load, state_dict_of

    if not osp.isfile(checkpoint):
        raise DeployError(f'checkpoint {checkpoint!r} does not exist: give the .pth file the '
                          'training wrote (work_dirs/<config>/epoch_N.pth or iter_N.pth)')
    try:
        loaded = safe_load(checkpoint)
    except Exception as error:  # noqa: BLE001 (its message says what is wrong with the file)
        raise DeployError(str(error)) from error
    state = state_dict_of(loaded) if isinstance(loaded, dict) else None
    if not state or not all(torch.is_tensor(v) for v in state.values()):
        raise DeployError(f'checkpoint {checkpoint!r} holds no state_dict of tensors')
    problems = checkpoint_misfit(model, state, unexpected=True)
    if problems:
        raise DeployError(f'checkpoint {checkpoint!r} does not fit the model of this config: '
                          f'{problems}. Give the checkpoint this config trained (the same '
                          'arch, classes and heads)')


def example_image(deploy_cfg: Config, library: str, seed: int = 0) -> np.ndarray:
    """A BGR uint8 image to trace with: the deploy config's fixed size, else a size typical of
    the library's test pipelines (the pipeline resizes it anyway)."""
    shape = deploy_cfg.onnx_config.get('input_shape')
    if shape:
        width, height = shape
    else:
        height, width = {'mmpretrain': (256, 256), 'mmseg': (512, 683),
                         'mmdet': (480, 640)}[library]
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def load_configs(model_config: Union[str, Config],
                 deploy_config: Optional[Union[str, Config]] = None) -> Tuple[Config, Config]:
    """The model config (a file, an mmhire config name or a Config) and the deploy config (a
    file, a name of mmhire's, a Config, or by default the dynamic ONNX Runtime config of the
    model's library), loaded as mmdeploy loads them. Needs mmdeploy
    (:func:`check_environment`)."""
    from mmdeploy.utils import load_config as mmdeploy_load_config

    from mmhire.utils.config import load_config, model_library

    model_cfg = load_config(model_config) if isinstance(model_config, str) else model_config
    if not isinstance(deploy_config, Config):
        library = model_library(model_cfg)
        deploy_config = mmdeploy_load_config(resolve_deploy_config(
            deploy_config or DEFAULT_DEPLOY_CONFIGS.get(
                library, 'classification_onnxruntime_dynamic')))[0]
    return model_cfg, deploy_config


def deploy(model_config: Union[str, Config], checkpoint: str,
           deploy_config: Optional[Union[str, Config]] = None, work_dir: str = 'work_dirs/deploy',
           image: Optional[Union[str, np.ndarray]] = None, device: str = 'cpu',
           config_name: Optional[str] = None) -> Dict[str, str]:
    """Exports the model of ``model_config`` with the weights of ``checkpoint`` as mmdeploy
    does (``tools/deploy.py``: for OpenVINO its Model Optimizer step too; ONNX Runtime needs
    no conversion) and returns the written files by name.

    Every check runs before anything is written; the files are made in a hidden folder of
    ``work_dir`` and moved into place only when all of them are complete, so a failed or
    interrupted deployment leaves the work dir as it was.
    """
    check_environment()
    from mmdeploy.apis import torch2onnx
    from mmdeploy.backend.sdk.export_info import export2SDK

    from mmhire.utils.config import build_model

    from . import mmdeploy_rewriters  # noqa: F401  (registers them with mmdeploy)
    from .contract import write_contract

    config_name = config_name or (model_config if isinstance(model_config, str)
                                  else 'the model config')
    # copies: building the model and mmdeploy's export modify configs, the caller's stay as given
    model_cfg, deploy_cfg = (copy.deepcopy(c) for c in load_configs(model_config, deploy_config))
    backend = backend_of(deploy_cfg)
    missing = missing_converter(backend)
    if missing:
        raise DeployError(f'{missing[0]} is not installed here: `make setup-deploy` installs it '
                          'in .venv-deploy')
    library = check_model_config(model_cfg, deploy_cfg, config_name)
    if not isinstance(image, (str, np.ndarray)) and image is not None:
        raise DeployError(f'image must be a file or an array, not {type(image).__name__}')
    if isinstance(image, str) and not osp.isfile(image):
        raise DeployError(f'image {image!r} does not exist')
    check_checkpoint(checkpoint, build_model(model_cfg))
    check_input_size(model_cfg, deploy_cfg)
    if image is None:
        image = example_image(deploy_cfg, library)

    os.makedirs(work_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.deploy-', dir=work_dir)
    try:
        # mmdeploy rewrites the config's test pipeline for an array input: give it a copy
        torch2onnx(image, staging, OUTPUT_FILES[0], copy.deepcopy(deploy_cfg),
                   copy.deepcopy(model_cfg), checkpoint, device)
        write_contract(osp.join(staging, OUTPUT_FILES[0]),  # in the staging folder
                       deployed_contract(model_cfg, deploy_cfg, library, checkpoint))
        if backend == 'openvino':
            convert_to_openvino(staging, deploy_cfg)
        export2SDK(deploy_cfg, model_cfg, staging, pth=checkpoint, device=device)
        written = {}
        files = OUTPUT_FILES + BACKEND_FILES.get(backend, ())
        for name in files:
            if not osp.isfile(osp.join(staging, name)):
                raise DeployError(f'mmdeploy did not write {name}')
        for name in files:
            target = osp.join(work_dir, name)
            publish(osp.join(staging, name), target)
            written[name] = target
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def deployed_contract(model_cfg: Config, deploy_cfg: Config, library: str,
                      checkpoint: Optional[str] = None) -> dict:
    """The input contract (:mod:`mmhire.deployment.contract`) of the model mmdeploy exports
    with ``deploy_cfg``, stored in ``end2end.onnx`` for ``tools/deployment/serve.py``."""
    from .contract import input_contract

    names = list(deploy_cfg.onnx_config.get('output_names', []))
    if library == 'mmpretrain':
        task = 'classification'
    elif library == 'mmseg':
        argmax = deploy_cfg.codebase_config.get('with_argmax', True)
        task = 'segmentation' if argmax else 'segmentation-logits'
    else:
        task = 'instance-segmentation' if 'masks' in names else 'detection'
    return input_contract(model_cfg, library, task, checkpoint=checkpoint,
                          output_names=names or None)


def check_input_size(model_cfg: Config, deploy_cfg: Config) -> None:
    """Stops when a fixed-size deploy config asks for an input below HireMLP's minimum."""
    from mmhire.models.backbones.hire_mlp import MIN_INPUT_SIZE as minimum
    from mmhire.models.backbones.hire_mlp import sizes_below_minimum

    shape = deploy_cfg.onnx_config.get('input_shape')
    if not shape:
        return
    width, height = shape
    if sizes_below_minimum([(height, width)]):
        raise DeployError(f'the deploy config\'s input_shape {width}x{height} (W x H) is below '
                          f'HireMLP\'s minimum input of {minimum} pixels a side; use a larger '
                          'input_shape or a dynamic deploy config')


__all__ = ['BACKEND_FILES', 'DEFAULT_DEPLOY_CONFIGS', 'DeployError', 'OUTPUT_FILES',
           'backend_of', 'check_checkpoint', 'convert_to_openvino', 'missing_converter',
           'check_environment', 'check_model_config', 'deploy', 'list_deploy_configs',
           'load_configs', 'resolve_deploy_config']

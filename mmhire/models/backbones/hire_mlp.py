"""Hire-MLP: Vision MLP via Hierarchical Rearrangement (Guo et al., CVPR 2022).

The model as the paper describes it, in plain PyTorch on the module tree: the region MLP
(inner-region rearrangement with the cross-region shift), the Hire module, the block, and
the registered :class:`HireMLP` backbone last. Faster forms of a few steps (the 1x1
convolution, the region fold, batch chunks in CPU inference) live in
:mod:`mmhire.models.layers`, each beside its plain form and inside the module it speeds up.
:meth:`HireMLP.forward` decides once which of them run (:mod:`mmhire.models.layers.plan`);
``fast_path='off'`` runs this file's formulation alone.
"""
import copy
import re
import warnings
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule, build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule, Sequential
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from mmhire.models.layers import (
    PLAIN,
    Plan,
    PointwiseConv2d,
    RegionGathers,
    bn_affine,
    check_export_layout,
    check_mode,
    current_plan,
    exports_channels_last,
    fold_into_conv,
    fold_regions,
    fold_regions_last,
    make_plan,
    per_channel,
    runs_channels_last,
    unfold_regions,
    unfold_regions_last,
    use_plan,
)
from mmhire.utils.checkpoint import load_pretrained

#: Smallest input side the backbone accepts: at 32 pixels the last stage is 1x1.
MIN_INPUT_SIZE = 32


def sizes_below_minimum(sizes: Iterable[Tuple[int, int]]) -> List[str]:
    """The sizes (H, W) among ``sizes`` that HireMLP cannot take (a side below
    :data:`MIN_INPUT_SIZE`), as ``'HxW'``: the one check of the tools and deploy configs."""
    return [f'{h}x{w}' for h, w in sizes if h < MIN_INPUT_SIZE or w < MIN_INPUT_SIZE]


class RegionMLP(BaseModule):
    """Inner-region rearrangement along one spatial axis, with the cross-region shift.

    The feature map is shifted circularly by ``step`` along the axis, wrap-padded to a multiple
    of ``region_size``, and each run of ``region_size`` consecutive positions is folded into
    the channels (channel ``c * p + k`` holds position ``k``), where a two-layer MLP (1x1
    convolutions ``fc1`` and ``fc2`` with a norm and an activation between them) mixes them.
    The result is unfolded, cropped and shifted back.

    Args:
        channels (int): Number of input and output channels ``C``.
        region_size (int): Positions per region ``p``.
        step (int): Cross-region shift ``s``; 0 disables it.
        axis (str): ``'h'`` for the height axis or ``'w'`` for the width axis.
        norm_cfg (dict): Config of the norm layer after the first MLP layer.
            Defaults to ``dict(type='BN')``.
        act_cfg (dict): Config of the activation between the MLP layers.
            Defaults to ``dict(type='ReLU')``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    #: In a channels-last stage (:mod:`mmhire.models.layers.layout`) ``norm`` gets NCHW maps.
    channels_last_children = ('norm', )

    def __init__(self,
                 channels: int,
                 region_size: int,
                 step: int,
                 axis: str,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if axis not in ('h', 'w'):
            raise ValueError(f"RegionMLP: axis must be 'h' or 'w', got {axis!r}")
        self.channels = channels
        self.region_size = region_size
        self.step = step
        self.axis = axis
        self.dim = 2 if axis == 'h' else 3
        hidden = channels // 2
        self.fc1 = PointwiseConv2d(channels * region_size, hidden, bias=False,
                                   in_fold=region_size)
        self.norm = build_norm_layer(norm_cfg, hidden)[1]
        self.act = build_activation_layer(act_cfg)
        self.fc2 = PointwiseConv2d(hidden, channels * region_size, bias=True,
                                   out_fold=region_size)
        self.gathers = RegionGathers(region_size, step)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = current_plan()
        if plan.channels_last:
            # (B, H, W, C): the same steps on the axis before, the fold position-major
            dim = self.dim - 1
            length = x.size(dim)
            y = fold_regions_last(x, dim, self.region_size, self.step)
            y = self.fc2(self.act(per_channel(self.norm, self.fc1(y))))
            return unfold_regions_last(y, dim, self.region_size, self.step, length)
        length = x.size(self.dim)
        gather = plan.region_gather
        if gather:
            y = self.gathers.fold(x, self.dim)
        else:
            # (B, C, H, W) -> (B, C*p, Hp/p, W) for 'h', (B, C*p, H, Wp/p) for 'w'
            y = fold_regions(x, self.dim, self.region_size, self.step)
        y = self.fc2(self.act(self.norm(self.fc1(y))))
        if gather:
            return self.gathers.unfold(y, self.dim, length)
        return unfold_regions(y, self.dim, self.region_size, self.step, length)

    def switch_to_deploy(self, in_affine=None) -> None:
        """Folds ``norm`` (and the preceding norm's ``in_affine``, which acts on the
        un-folded channels) into ``fc1``."""
        self.fc1 = fold_into_conv(self.fc1, in_affine, bn_affine(self.norm),
                                  repeat=self.region_size)
        self.norm = nn.Identity()


class HireMixer(BaseModule):
    """The Hire module: height, width and channel branches blended by split attention.

    Args:
        channels (int): Number of input and output channels ``C``.
        region_size (int): Positions per region in the height and width branches.
        step (int): Cross-region shift of this block; 0 disables it.
        norm_cfg (dict): Config of the norm layers inside the region MLPs.
            Defaults to ``dict(type='BN')``.
        act_cfg (dict): Config of the activation in the reweighting MLP.
            Defaults to ``dict(type='GELU')``.
        region_act_cfg (dict): Config of the activation inside the region MLPs.
            Defaults to ``dict(type='ReLU')``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    #: In a channels-last stage ``reweight`` gets the pooled (B, C, 1, 1) map.
    channels_last_children = ('reweight', )

    def __init__(self,
                 channels: int,
                 region_size: int,
                 step: int,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='GELU'),
                 region_act_cfg: dict = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.channels = channels
        self.height_mlp = RegionMLP(channels, region_size, step, 'h', norm_cfg, region_act_cfg)
        self.width_mlp = RegionMLP(channels, region_size, step, 'w', norm_cfg, region_act_cfg)
        self.channel_fc = PointwiseConv2d(channels, channels, bias=True)
        self.reweight = Sequential()
        self.reweight.add_module('fc1', nn.Conv2d(channels, channels // 4, 1, bias=True))
        self.reweight.add_module('act', build_activation_layer(act_cfg))
        self.reweight.add_module('fc2', nn.Conv2d(channels // 4, channels * 3, 1, bias=True))
        self.proj = PointwiseConv2d(channels, channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C = x.size(0), self.channels
        last = current_plan().channels_last
        h = self.height_mlp(x)
        w = self.width_mlp(x)
        c = self.channel_fc(x)
        # (B, C, H, W) -> (B, C, 1, 1) -> (B, 3C, 1, 1); channels-last: (B, H, W, C) ->
        # (B, 1, 1, C), the same memory as (B, C, 1, 1)
        pooled = (h + w + c).mean(dim=(1, 2) if last else (2, 3), keepdim=True)
        attn = self.reweight(pooled.reshape(B, C, 1, 1))
        # (B, 3C, 1, 1) -> (B, C, 3), channel c*3 + k weighs branch k of channel c;
        # softmax over the branches, then (B, C, 3) -> (3, B, C, 1, 1) or (3, B, 1, 1, C)
        attn = attn.reshape(B, C, 3).softmax(dim=2).permute(2, 0, 1)
        attn = attn.reshape(3, B, 1, 1, C) if last else attn.reshape(3, B, C, 1, 1)
        return self.proj(h * attn[0] + w * attn[1] + c * attn[2])

    def switch_to_deploy(self, in_affine=None) -> None:
        """Folds the region MLPs' norms, and ``in_affine`` (the block's ``norm1``), into the
        first convolution of each branch."""
        self.height_mlp.switch_to_deploy(in_affine)
        self.width_mlp.switch_to_deploy(in_affine)
        if in_affine is not None:
            self.channel_fc = fold_into_conv(self.channel_fc, in_affine)


class HireBlock(BaseModule):
    """A Hire-MLP block: a Hire module and a channel MLP, each in a pre-norm residual.

    Args:
        channels (int): Number of input and output channels.
        region_size (int): Positions per region of the Hire module.
        step (int): Cross-region shift of this block; 0 disables it.
        mlp_ratio (float): Hidden width of the channel MLP relative to ``channels``.
            Defaults to 4.
        drop_path_rate (float): Stochastic depth rate of both residual branches.
            Defaults to 0.
        norm_cfg (dict): Config of the norm layers. Defaults to ``dict(type='BN')``.
        act_cfg (dict): Config of the activation of the channel and reweighting MLPs.
            Defaults to ``dict(type='GELU')``.
        region_act_cfg (dict): Config of the activation inside the region MLPs.
            Defaults to ``dict(type='ReLU')``.
        with_cp (bool): Trade compute for memory with gradient checkpointing.
            Defaults to False.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    #: In a channels-last stage the norms get NCHW maps (through ``per_channel``).
    channels_last_children = ('norm1', 'norm2')

    def __init__(self,
                 channels: int,
                 region_size: int,
                 step: int,
                 mlp_ratio: float = 4.,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='GELU'),
                 region_act_cfg: dict = dict(type='ReLU'),
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.with_cp = with_cp
        self.step = step
        self.norm1 = build_norm_layer(norm_cfg, channels)[1]
        self.token_mixer = HireMixer(channels, region_size, step, norm_cfg, act_cfg,
                                     region_act_cfg)
        self.norm2 = build_norm_layer(norm_cfg, channels)[1]
        hidden = int(channels * mlp_ratio)
        self.mlp = Sequential()
        self.mlp.add_module('fc1', PointwiseConv2d(channels, hidden))
        self.mlp.add_module('act', build_activation_layer(act_cfg))
        self.mlp.add_module('fc2', PointwiseConv2d(hidden, channels))
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.token_mixer(per_channel(self.norm1, x)))
        return x + self.drop_path(self.mlp(per_channel(self.norm2, x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._inner_forward, x, use_reentrant=False)
        return self._inner_forward(x)

    def switch_to_deploy(self) -> None:
        """Folds ``norm1`` into the Hire module's first convolutions and ``norm2`` into
        ``mlp.fc1`` (the pad is circular, so a per-channel affine commutes with the shift,
        pad and fold)."""
        self.token_mixer.switch_to_deploy(bn_affine(self.norm1))
        self.mlp.fc1 = fold_into_conv(self.mlp.fc1, bn_affine(self.norm2))
        self.norm1 = nn.Identity()
        self.norm2 = nn.Identity()


@MODELS.register_module()
class HireMLP(BaseModule):
    """Hire-MLP backbone.

    A pyramid of four stages of Hire blocks behind a 7x7 stride-4 stem, with 3x3 stride-2
    downsampling between stages, as in `Hire-MLP: Vision MLP via Hierarchical Rearrangement
    <https://arxiv.org/abs/2108.13341>`_. Inside each block, tokens of small regions are folded
    into channels and mixed by 1x1 convolutions (inner-region rearrangement), and every other
    block shifts the feature map so that regions exchange information (cross-region
    rearrangement). The output of stage ``i`` has stride ``4 * 2**i``.

    Args:
        arch (str | dict): Architecture. A name in :attr:`arch_zoo` (``'tiny'``, ``'small'``,
            ``'base'``, ``'large'`` or their first letters), or a dict with the keys
            ``depths``, ``channels``, ``mlp_ratios``, ``region_sizes``, ``step_strides`` and
            ``step_dilations``, each a sequence with one entry per stage.
            Defaults to ``'tiny'``.
        in_channels (int): Number of input image channels. Defaults to 3.
        drop_path_rate (float): Stochastic depth rate of the last block; block ``k`` of
            ``n`` gets ``drop_path_rate * k / (n - 1)``. Defaults to 0.
        out_indices (Sequence[int] | int): Stages whose outputs are returned, counted from 0;
            negative values count from the end. Each gets its own norm layer; outputs come
            in stage order. Defaults to ``(3, )``.
        frozen_stages (int): Stages to freeze (parameters fixed, norm layers in eval mode):
            -1 freezes nothing, 0 the stem only, and ``k > 0`` the stem and the first ``k``
            stages with their downsampling layers, as in mmdet. Defaults to -1.
        norm_eval (bool): Keep every batch-norm layer in eval mode (frozen statistics) while
            training. Defaults to False.
        norm_cfg (dict): Config of all norm layers. Defaults to ``dict(type='BN')``.
        act_cfg (dict): Config of the activation of the channel and reweighting MLPs.
            Defaults to ``dict(type='GELU')``.
        conv_act_cfg (dict): Config of the activation after the stem, the downsampling
            convolutions and inside the region MLPs. Defaults to ``dict(type='ReLU')``.
        with_cp (bool): Use gradient checkpointing in every block, which saves memory at the
            cost of a second forward pass. Defaults to False.
        fast_path (str): ``'auto'`` runs the fast forms of :mod:`mmhire.models.layers` where
            they were measured to win on this kind of CPU, ``'on'`` wherever they apply (CPU
            inference), ``'off'`` never: the plain formulation on the same parameters.
            :func:`mmhire.models.layers.fast_path` (a context manager) overrides it, and the
            ``MMHIRE_FAST_PATH`` environment variable decides ``'auto'``
            (:mod:`mmhire.models.layers.plan`). Defaults to ``'auto'``.
        export_layout (str): The layout of the stages in an ONNX export (either exporter):
            ``'channels_last'``, whose 1x1 convolutions are matrix products on (B, H, W, C)
            maps, or ``'nchw'``, the plain layout (:mod:`mmhire.models.layers.layout`).
            Eager PyTorch and ``torch.compile`` always run NCHW.
            Defaults to ``'channels_last'``.
        init_cfg (dict | list[dict], optional): Initialization config. Defaults to truncated
            normal (std 0.02) weights and zero biases for convolutions and linear layers, and
            weight 1, bias 0 for norm layers.
        pretrained (str, optional): Deprecated; what mmseg's ``model.pretrained`` hands the
            backbone. A checkpoint path becomes ``init_cfg=dict(type='Pretrained',
            checkpoint=pretrained)`` with a warning; an OpenMMLab or torchvision ResNet left
            over from a base config is refused. Defaults to None.

    Examples:
        >>> import torch
        >>> from mmhire.models import HireMLP
        >>> model = HireMLP(arch='tiny', out_indices=(0, 1, 2, 3)).eval()
        >>> for out in model(torch.rand(1, 3, 224, 224)):
        ...     print(tuple(out.shape))
        (1, 64, 56, 56)
        (1, 128, 28, 28)
        (1, 320, 14, 14)
        (1, 512, 7, 7)
    """

    _shared = dict(
        mlp_ratios=[4, 4, 4, 4],
        region_sizes=[4, 3, 3, 2],
        step_strides=[2, 2, 3, 2],
        step_dilations=[2, 2, 1, 1])
    arch_zoo: Dict[str, dict] = {
        **dict.fromkeys(['t', 'tiny'],
                        dict(depths=[2, 2, 4, 2], channels=[64, 128, 320, 512], **_shared)),
        **dict.fromkeys(['s', 'small'],
                        dict(depths=[3, 4, 10, 3], channels=[64, 128, 320, 512], **_shared)),
        **dict.fromkeys(['b', 'base'],
                        dict(depths=[4, 6, 24, 3], channels=[64, 128, 320, 512], **_shared)),
        **dict.fromkeys(['l', 'large'],
                        dict(depths=[4, 6, 24, 3], channels=[96, 192, 384, 768], **_shared)),
    }
    arch_keys = ('depths', 'channels', 'mlp_ratios', 'region_sizes', 'step_strides',
                 'step_dilations')

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 drop_path_rate: float = 0.,
                 out_indices: Union[Sequence[int], int] = (3, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='GELU'),
                 conv_act_cfg: dict = dict(type='ReLU'),
                 with_cp: bool = False,
                 fast_path: str = 'auto',
                 export_layout: str = 'channels_last',
                 init_cfg: Optional[Union[dict, List[dict]]] = [
                     dict(type='TruncNormal', layer=['Conv2d', 'Linear'], std=.02, bias=0.),
                     dict(type='Constant', layer=['_BatchNorm', 'GroupNorm', 'LayerNorm'],
                          val=1., bias=0.),
                 ],
                 pretrained: Optional[str] = None) -> None:
        if pretrained is not None:
            init_cfg = self._pretrained_init_cfg(pretrained)
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._parse_arch(arch)
        depths = self.arch_settings['depths']
        channels = self.arch_settings['channels']
        self.num_stages = len(depths)
        self.channels = list(channels)
        self.in_channels = in_channels
        self.out_indices = self._parse_out_indices(out_indices, self.num_stages)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'HireMLP: frozen_stages must be an int from -1 (nothing) to '
                             f'{self.num_stages} (every stage), got {frozen_stages!r}')
        if not 0. <= drop_path_rate < 1.:
            raise ValueError(f'HireMLP: drop_path_rate must be in [0, 1), got {drop_path_rate!r}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.deploy = False
        self.with_cp = with_cp
        self.fast_path = check_mode(fast_path)
        self.export_layout = check_export_layout(export_layout)

        total = sum(depths)
        rates = [drop_path_rate * k / max(total - 1, 1) for k in range(total)]

        # downsample_layers[0] is the stem; downsample_layers[i] opens stage i.
        self.downsample_layers = nn.ModuleList()
        self.stages = nn.ModuleList()
        block_id = 0
        for i, depth in enumerate(depths):
            if i == 0:
                down = ConvModule(in_channels, channels[0], 7, stride=4, padding=2, bias=True,
                                  norm_cfg=norm_cfg, act_cfg=conv_act_cfg)
            else:
                down = ConvModule(channels[i - 1], channels[i], 3, stride=2, padding=1,
                                  bias=True, norm_cfg=norm_cfg, act_cfg=conv_act_cfg)
            self.downsample_layers.append(down)
            stride = self.arch_settings['step_strides'][i]
            dilation = self.arch_settings['step_dilations'][i]
            blocks = [
                HireBlock(
                    channels[i],
                    region_size=self.arch_settings['region_sizes'][i],
                    step=(j % stride) * dilation,
                    mlp_ratio=self.arch_settings['mlp_ratios'][i],
                    drop_path_rate=rates[block_id + j],
                    norm_cfg=norm_cfg,
                    act_cfg=act_cfg,
                    region_act_cfg=conv_act_cfg,
                    with_cp=with_cp) for j in range(depth)
            ]
            block_id += depth
            self.stages.append(Sequential(*blocks))

        for i in self.out_indices:
            self.add_module(f'norm{i}', build_norm_layer(norm_cfg, channels[i])[1])

        self._freeze_stages()

    @property
    def out_channels(self) -> List[int]:
        """Channels of each returned feature map, in the order of ``out_indices``."""
        return [self.channels[i] for i in self.out_indices]

    @property
    def out_strides(self) -> List[int]:
        """Stride of each returned feature map, in the order of ``out_indices``."""
        return [4 * 2**i for i in self.out_indices]

    @classmethod
    def _parse_arch(cls, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                raise ValueError(f'HireMLP: unknown arch {arch!r}; choose one of '
                                 f'{sorted(cls.arch_zoo)} or pass a dict with the keys '
                                 f'{list(cls.arch_keys)}')
            return copy.deepcopy(cls.arch_zoo[key])
        if not isinstance(arch, dict):
            raise TypeError(f'HireMLP: arch must be a str or a dict, got {type(arch).__name__}')
        missing = [k for k in cls.arch_keys if k not in arch]
        unknown = [k for k in arch if k not in cls.arch_keys]
        if missing or unknown:
            raise ValueError(f'HireMLP: custom arch needs exactly the keys {list(cls.arch_keys)};'
                             f' missing {missing}, unknown {unknown}')
        settings = {k: list(arch[k]) if isinstance(arch[k], (list, tuple)) else arch[k]
                    for k in cls.arch_keys}
        bad = [k for k, v in settings.items() if not isinstance(v, list) or not v]
        if bad:
            raise ValueError(f'HireMLP: custom arch values must be non-empty lists with one '
                             f'entry per stage; not so for {bad}')
        lengths = {k: len(v) for k, v in settings.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f'HireMLP: custom arch lists must all have one entry per stage, '
                             f'got lengths {lengths}')
        for key in ('depths', 'channels', 'region_sizes', 'step_strides'):
            if any(not isinstance(v, int) or v < 1 for v in settings[key]):
                raise ValueError(f'HireMLP: arch {key} must be positive ints, '
                                 f'got {settings[key]}')
        if any(not isinstance(v, int) or v < 0 for v in settings['step_dilations']):
            raise ValueError(f'HireMLP: arch step_dilations must be non-negative ints, '
                             f'got {settings["step_dilations"]}')
        if any(v <= 0 for v in settings['mlp_ratios']):
            raise ValueError(f'HireMLP: arch mlp_ratios must be positive, '
                             f'got {settings["mlp_ratios"]}')
        if any(c < 4 for c in settings['channels']):
            raise ValueError(f'HireMLP: arch channels must be at least 4 (the reweighting MLP '
                             f'has channels // 4 units), got {settings["channels"]}')
        return settings

    @staticmethod
    def _parse_out_indices(out_indices: Union[Sequence[int], int],
                           num_stages: int) -> List[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, (list, tuple)) or not out_indices:
            raise TypeError(f'HireMLP: out_indices must be an int or a non-empty sequence of '
                            f'ints, got {out_indices!r}')
        parsed = []
        for index in out_indices:
            if not isinstance(index, int) or not -num_stages <= index < num_stages:
                raise ValueError(f'HireMLP: out_indices entries must be ints in '
                                 f'[{-num_stages}, {num_stages - 1}] for {num_stages} stages, '
                                 f'got {index!r}')
            parsed.append(index % num_stages)
        if len(set(parsed)) != len(parsed):
            raise ValueError(f'HireMLP: out_indices name a stage twice: {list(out_indices)}')
        return sorted(parsed)

    @staticmethod
    def _pretrained_init_cfg(pretrained: str) -> dict:
        """The ``init_cfg`` that replaces the deprecated ``pretrained`` argument."""
        if not isinstance(pretrained, str):
            raise TypeError(f'HireMLP: pretrained must be a checkpoint path or None, got '
                            f'{type(pretrained).__name__}')
        if re.match(r'(open-mmlab|torchvision|mmcls|mmpretrain)://', pretrained):
            raise ValueError(
                f'HireMLP: model.pretrained={pretrained!r} is a weights file of another '
                f'backbone, left over from the base config; set model.pretrained=None in your '
                f'config (--cfg-options model.pretrained=None) and give HireMLP its weights '
                f"with backbone.init_cfg=dict(type='Pretrained', checkpoint=<converted "
                f"Hire-MLP file>, prefix='backbone.')")
        warnings.warn(
            'HireMLP: the pretrained argument is deprecated; use init_cfg=dict('
            "type='Pretrained', checkpoint=..., prefix='backbone.') instead",
            DeprecationWarning, stacklevel=3)
        return dict(type='Pretrained', checkpoint=pretrained)

    def init_weights(self) -> None:
        """Initialises the weights; a ``Pretrained`` entry of ``init_cfg`` is loaded last and
        strictly checked: a checkpoint with tensors of other shapes, or with none of this
        backbone's keys, is refused with the keys that do not fit."""
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
        cfgs = [cfg for cfg in cfgs if cfg]
        pretrained = [cfg for cfg in cfgs if cfg.get('type') == 'Pretrained']
        if not pretrained:
            return super().init_weights()
        original, self.init_cfg = self.init_cfg, [
            cfg for cfg in cfgs if cfg.get('type') != 'Pretrained'] or None
        try:
            super().init_weights()
        finally:
            self.init_cfg = original
        load_pretrained(self, pretrained[-1])

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen = [self.downsample_layers[0]]
        for i in range(self.frozen_stages):
            if i > 0:
                frozen.append(self.downsample_layers[i])
            frozen.append(self.stages[i])
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f'HireMLP expects a 4-D tensor (B, C, H, W), got {shape}')
        if not x.is_floating_point():
            raise TypeError(f'HireMLP expects a floating-point input, got {x.dtype}; convert '
                            f'images with .float() and normalise them first')
        if x.size(1) != self.in_channels:
            raise ValueError(f'HireMLP was built with in_channels={self.in_channels} but the '
                             f'input has {x.size(1)} channels (shape {tuple(x.shape)})')
        # each side on its own: min() of the two would make torch 2.1's dynamo guard on
        # which side is the shorter, and compile again when that changes
        if x.size(2) < MIN_INPUT_SIZE or x.size(3) < MIN_INPUT_SIZE:
            raise ValueError(f'HireMLP needs inputs of at least {MIN_INPUT_SIZE}x'
                             f'{MIN_INPUT_SIZE} pixels, got {tuple(x.shape[2:])}; resize or '
                             f'pad the images')

    def plan(self, x: torch.Tensor) -> Plan:
        """The plan of a forward on ``x``: the layout of the stages and the fast forms that
        run (:mod:`mmhire.models.layers.plan`), from ``x``, the model's settings and the
        environment, read once."""
        return make_plan(x, self.fast_path, exports_channels_last(self.export_layout))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Returns the normed outputs of the stages in ``out_indices``, each (B, C_i, H_i, W_i).

        ``H_0 = floor((H - 3) / 4) + 1`` after the stem and ``H_{i+1} = ceil(H_i / 2)``.
        """
        self._check_input(x)
        plan = self.plan(x)
        outs = []
        for i, (down, stage) in enumerate(zip(self.downsample_layers, self.stages)):
            x = self._run_stage(stage, down(x), plan)
            # the stages in out_indices, and only those, have an output norm
            norm = getattr(self, f'norm{i}', None)
            if norm is not None:
                outs.append(norm(x))
        return tuple(outs)

    #: Elements (per image: channels x height x width) of the feature map that one chunk of
    #: a CPU inference batch holds as it goes through a stage: 4 MiB of float32, about one
    #: core's L2 cache, so that a block's intermediate maps stay in cache.
    INFER_CHUNK_ELEMENTS = 2**20

    def _run_stage(self, stage: nn.Module, x: torch.Tensor, plan: Plan) -> torch.Tensor:
        """Runs ``stage`` on ``x`` under ``plan``: channels-last where the plan says so and
        every module of the stage declares it can (else NCHW); with the ``batch_chunks`` form
        (CPU inference), a few images at a time.

        Inference treats every image on its own (BatchNorm uses its running statistics), so
        splitting the batch changes no number, while the smaller working set cuts the time of
        the memory-bound work on the early, large maps (docs/benchmarks.md). The stage's
        modules run once per chunk. Training mode takes the whole batch.
        """
        if plan.channels_last:
            if runs_channels_last(stage):
                # the channels-last export form (mmhire.models.layers.layout):
                # (B, C, H, W) -> (B, H, W, C) -> the stage -> (B, C, H, W)
                with use_plan(plan):
                    return stage(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            plan = plan.replace(channels_last=False)
        if plan is PLAIN and current_plan() is PLAIN:
            return stage(x)  # what torch.compile traces: no plan to enter
        with use_plan(plan):
            # Eager CPU inference only: nothing here is read from the size of a traced or
            # compiled input, whose graph stays the same for every size.
            if stage.training or not plan.batch_chunks:
                return stage(x)
            per_image = x.numel() // max(x.size(0), 1)
            chunk = max(1, self.INFER_CHUNK_ELEMENTS // max(per_image, 1))
            if chunk >= x.size(0):
                return stage(x)
            return torch.cat([stage(part) for part in x.split(chunk)])

    def switch_to_deploy(self) -> 'HireMLP':
        """Turns the backbone into its inference form: every BatchNorm except the output
        norms is folded into a neighbouring convolution, which saves a pass over every
        feature map. Outputs are unchanged up to float rounding; the model can no longer be
        trained. Call it on an eval-mode model with trained statistics."""
        if self.deploy:
            return self
        for layer in self.downsample_layers:
            layer.conv = fold_into_conv(layer.conv, out_affine=bn_affine(layer.norm))
            layer.with_norm = False
            delattr(layer, layer.norm_name)
            layer.norm_name = None
        for stage in self.stages:
            for block in stage:
                block.switch_to_deploy()
        self.deploy = True
        return self.eval()

    def train(self, mode: bool = True) -> 'HireMLP':
        if mode and getattr(self, 'deploy', False):
            raise RuntimeError('HireMLP: this model was switched to deploy form (BatchNorm '
                               'folded into convolutions) and can only run inference; build '
                               'a new one to train')
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self


__all__ = ['HireMLP', 'HireBlock', 'HireMixer', 'RegionMLP', 'MIN_INPUT_SIZE',
           'sizes_below_minimum']

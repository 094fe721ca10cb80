"""The straightforward formulation of Hire-MLP: the paper's steps, one tensor operation each.

The shift is ``torch.roll``, the wrap-around pad concatenates the map with itself and crops,
the inner-region rearrangement is reshape, permute, reshape, and every norm is its own
BatchNorm layer. mmhire's tests use it as the oracle that :class:`mmhire.models.HireMLP`
must equal, and ``tools/analysis_tools/benchmark.py`` as the baseline it must beat. Its
module names equal the released checkpoint's keys (``patch_embed``, ``network.<i>``,
``attn.mlp_h1`` ...), so its state dict is in the released layout.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

ARCHS = {
    'tiny': dict(depths=[2, 2, 4, 2], channels=[64, 128, 320, 512]),
    'small': dict(depths=[3, 4, 10, 3], channels=[64, 128, 320, 512]),
    'base': dict(depths=[4, 6, 24, 3], channels=[64, 128, 320, 512]),
    'large': dict(depths=[4, 6, 24, 3], channels=[96, 192, 384, 768]),
}
REGION_SIZES = [4, 3, 3, 2]
STEP_STRIDES = [2, 2, 3, 2]
STEP_DILATIONS = [2, 2, 1, 1]


def wrap_pad(x, dim, multiple):
    """Appends the first rows (or columns) after the last ones until the size along ``dim`` is
    a multiple of ``multiple``, going around again if needed."""
    n = x.size(dim)
    target = -(-n // multiple) * multiple
    repeats = -(-target // n)
    return torch.cat([x] * repeats, dim=dim).narrow(dim, 0, target)


def regions_to_channels(x, dim, p):
    """(B, C, Hp, W) -> (B, C*p, Hp/p, W) along ``dim`` (2 or 3); channel c*p + k holds
    position k of each region."""
    B, C, H, W = x.shape
    if dim == 2:
        # (B, C, Hp/p, p, W) -> (B, C, p, Hp/p, W)
        return x.reshape(B, C, H // p, p, W).permute(0, 1, 3, 2, 4).reshape(B, C * p, H // p, W)
    # (B, C, H, Wp/p, p) -> (B, C, p, H, Wp/p)
    return x.reshape(B, C, H, W // p, p).permute(0, 1, 4, 2, 3).reshape(B, C * p, H, W // p)


def channels_to_regions(x, dim, p):
    """Inverse of :func:`regions_to_channels`: (B, C*p, Hp/p, W) -> (B, C, Hp, W)."""
    B, Cp, H, W = x.shape
    C = Cp // p
    if dim == 2:
        return x.reshape(B, C, p, H, W).permute(0, 1, 3, 2, 4).reshape(B, C, H * p, W)
    return x.reshape(B, C, p, H, W).permute(0, 1, 3, 4, 2).reshape(B, C, H, W * p)


class ReferenceMlp(nn.Module):

    def __init__(self, dim, hidden, out):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, out, 1)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class ReferenceHire(nn.Module):

    def __init__(self, dim, pixel, step):
        super().__init__()
        self.pixel, self.step = pixel, step
        self.mlp_h1 = nn.Conv2d(dim * pixel, dim // 2, 1, bias=False)
        self.mlp_h1_norm = nn.BatchNorm2d(dim // 2)
        self.mlp_h2 = nn.Conv2d(dim // 2, dim * pixel, 1)
        self.mlp_w1 = nn.Conv2d(dim * pixel, dim // 2, 1, bias=False)
        self.mlp_w1_norm = nn.BatchNorm2d(dim // 2)
        self.mlp_w2 = nn.Conv2d(dim // 2, dim * pixel, 1)
        self.mlp_c = nn.Conv2d(dim, dim, 1)
        self.reweight = ReferenceMlp(dim, dim // 4, dim * 3)
        self.proj = nn.Conv2d(dim, dim, 1)

    def branch(self, x, dim, fc1, norm, fc2):
        n = x.size(dim)
        if self.step:
            x = torch.roll(x, self.step, dim)   # row i takes row (i - s) mod n
        x = wrap_pad(x, dim, self.pixel)
        x = regions_to_channels(x, dim, self.pixel)
        x = fc2(F.relu(norm(fc1(x))))
        x = channels_to_regions(x, dim, self.pixel).narrow(dim, 0, n)
        if self.step:
            x = torch.roll(x, -self.step, dim)
        return x

    def forward(self, x):
        B, C = x.shape[:2]
        h = self.branch(x, 2, self.mlp_h1, self.mlp_h1_norm, self.mlp_h2)
        w = self.branch(x, 3, self.mlp_w1, self.mlp_w1_norm, self.mlp_w2)
        c = self.mlp_c(x)
        a = (h + w + c).mean(dim=(2, 3)).reshape(B, C, 1, 1)
        a = self.reweight(a).reshape(B, C, 3).softmax(dim=2)
        out = (h * a[:, :, 0].reshape(B, C, 1, 1) + w * a[:, :, 1].reshape(B, C, 1, 1) +
               c * a[:, :, 2].reshape(B, C, 1, 1))
        return self.proj(out)


class ReferenceBlock(nn.Module):

    def __init__(self, dim, pixel, step):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = ReferenceHire(dim, pixel, step)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = ReferenceMlp(dim, dim * 4, dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ConvNormReLU(nn.Module):

    def __init__(self, cin, cout, k, s, p):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, k, s, p)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.norm(self.proj(x)))


class ReferenceHireMLPNet(nn.Module):
    """The whole classifier in the released layout; ``forward_stages`` gives the outputs of the
    four stages (before any output norm)."""

    def __init__(self, arch='tiny', num_classes=1000, region_sizes=REGION_SIZES,
                 step_strides=STEP_STRIDES, step_dilations=STEP_DILATIONS):
        super().__init__()
        depths, dims = ARCHS[arch]['depths'], ARCHS[arch]['channels']
        self.steps = []
        self.patch_embed = ConvNormReLU(3, dims[0], 7, 4, 2)
        network = []
        for i, depth in enumerate(depths):
            steps = [(j % step_strides[i]) * step_dilations[i] for j in range(depth)]
            self.steps.append(steps)
            network.append(nn.Sequential(
                *[ReferenceBlock(dims[i], region_sizes[i], s) for s in steps]))
            if i < len(depths) - 1:
                network.append(ConvNormReLU(dims[i], dims[i + 1], 3, 2, 1))
        self.network = nn.ModuleList(network)
        self.norm = nn.BatchNorm2d(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)

    def forward_stages(self, x):
        x = self.patch_embed(x)
        outs = []
        for i, layer in enumerate(self.network):
            x = layer(x)
            if i % 2 == 0:
                outs.append(x)
        return outs

    def forward(self, x):
        x = self.norm(self.forward_stages(x)[-1])
        return self.head(x.mean(dim=(2, 3)))

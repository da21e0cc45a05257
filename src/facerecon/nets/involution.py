"""Involution (Li et al., CVPR 2021) and RedNet, in plain PyTorch (any device, any float dtype).

Involution inverts convolution's sharing: the ``K x K`` kernel is generated *per pixel* from
the feature at that pixel (one 1x1 reduce + 1x1 span), and shared across the ``C / G``
channels of each of ``G`` groups. Here it is written with :func:`torch.nn.functional.unfold`
(``im2col``), so it runs on the CPU and on CUDA and autograd differentiates it; the release of
DF-MVR calls a CUDA-only kernel, which has no CPU path.

Shapes: an input ``x (B, C, H, W)`` gives ``(B, C, H / s, W / s)`` (stride ``s``, ``same``
padding ``K // 2``). The kernel of output pixel ``p`` is ``span(relu(bn(reduce(pool_s(x)))))``
at ``p``, ``(G, K*K)``; output channel ``c`` (group ``g = c // (C / G)``) is
``sum_k kernel[g, k] * x_unfolded[c, k]``.

RedNet replaces the 3x3 convolution of every ResNet bottleneck (and one in the stem) with an
involution; :class:`RedNet` takes the stage depths (RedNet-50: ``(3, 4, 6, 3)``), a width
multiplier and the number of input channels (DF-MVR feeds it a 256-channel feature map).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Involution2d", "RedNet", "RedNetBottleneck", "involution"]


def involution(x: Tensor, kernel: Tensor, kernel_size: int, stride: int = 1) -> Tensor:
    """Apply per-pixel kernels (the functional core of :class:`Involution2d`).

    Args:
        x: ``(B, C, H, W)`` input.
        kernel: ``(B, G, K*K, Ho, Wo)`` kernels of the output pixels (``C % G == 0``,
            ``Ho = ceil(H / stride)``).
        kernel_size: ``K`` (odd); padding is ``K // 2``.
        stride: sampling step of the output grid.

    Returns:
        ``(B, C, Ho, Wo)``.
    """
    b, c, h, w = x.shape
    k = int(kernel_size)
    g, kk, ho, wo = kernel.shape[1:]
    if kk != k * k or c % g:
        raise ValueError(f"kernel {tuple(kernel.shape)} does not fit K={k}, C={c}")
    cols = F.unfold(x, k, padding=k // 2, stride=stride)  # (B, C*K*K, Ho*Wo)
    if cols.shape[-1] != ho * wo:
        raise ValueError(f"kernel grid {ho}x{wo} does not match stride {stride} on {h}x{w}")
    cols = cols.view(b, g, c // g, kk, ho, wo)
    return (cols * kernel.unsqueeze(2)).sum(dim=3).view(b, c, ho, wo)


class Involution2d(nn.Module):
    """Involution layer: per-pixel ``K x K`` kernels generated from the input.

    Args:
        channels: ``C`` (in = out).
        kernel_size: ``K`` (the DF-MVR release: 7 in bottlenecks, 3 in the stem).
        stride: 1 or 2 (the kernel is generated from the average-pooled input).
        group_channels: channels per group (16 in RedNet); ``G = C / group_channels``
            (at least 1; ``C`` must be a multiple when ``C > group_channels``).
        reduction: channel reduction of the kernel-generating branch (4 in RedNet).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 7,
        stride: int = 1,
        group_channels: int = 16,
        reduction: int = 4,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride = int(kernel_size), int(stride)
        gc = min(group_channels, channels)
        if channels % gc:
            raise ValueError(f"{channels} channels are not groups of {gc}")
        self.groups = channels // gc
        mid = max(channels // reduction, 1)
        self.reduce = nn.Sequential(
            nn.Conv2d(channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True)
        )
        self.span = nn.Conv2d(mid, self.kernel_size**2 * self.groups, 1)
        self.pool = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, H / stride, W / stride)``."""
        kernel = self.span(self.reduce(self.pool(x)))  # (B, G*K*K, Ho, Wo)
        b, _, ho, wo = kernel.shape
        kernel = kernel.view(b, self.groups, self.kernel_size**2, ho, wo)
        return involution(x, kernel, self.kernel_size, self.stride)


class RedNetBottleneck(nn.Module):
    """ResNet bottleneck with the 3x3 convolution replaced by an :class:`Involution2d`."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        kernel_size: int = 7,
        group_channels: int = 16,
        reduction: int = 4,
    ) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.inv = Involution2d(planes, kernel_size, stride, group_channels, reduction)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        nn.init.zeros_(self.bn3.weight)  # residual branch starts at zero (a plain identity)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity(),
                nn.Conv2d(inplanes, out, 1, bias=False),
                nn.BatchNorm2d(out),
            )

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.inv(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + self.downsample(x))


class RedNet(nn.Module):
    """RedNet: a stem (conv 3x3 s2, involution 3x3, conv 3x3, max-pool) and four stages of
    :class:`RedNetBottleneck` (strides 1, 2, 2, 2), global average pooling.

    Args:
        in_channels: channels of the input map (3 for images; 256 for DF-MVR's fused map).
        depths: blocks per stage (RedNet-50: ``(3, 4, 6, 3)``).
        width_mult: channel multiplier (1.0: stem 64, planes 64/128/256/512, 2048 out).
        kernel_size: involution kernel of the bottlenecks (7).
        group_channels, reduction: involution groups and reduction (16, 4).

    ``forward(x (B, in_channels, H, W)) -> (B, out_channels)`` pooled features.
    """

    def __init__(
        self,
        in_channels: int = 3,
        depths: tuple[int, ...] = (3, 4, 6, 3),
        width_mult: float = 1.0,
        kernel_size: int = 7,
        group_channels: int = 16,
        reduction: int = 4,
    ) -> None:
        super().__init__()

        def width(n: int) -> int:
            return max(group_channels, round(n * width_mult / group_channels) * group_channels)

        stem = width(64)
        half = max(group_channels, stem // 2)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, half, 3, 2, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            Involution2d(half, 3, 1, group_channels, reduction),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            nn.Conv2d(half, stem, 3, 1, 1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks: list[nn.Module] = []
        inplanes = stem
        for i, depth in enumerate(depths):
            planes = width(64 * 2**i)
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(
                    RedNetBottleneck(
                        inplanes, planes, stride, kernel_size, group_channels, reduction
                    )
                )
                inplanes = planes * RedNetBottleneck.expansion
        self.stages = nn.Sequential(*blocks)
        self.out_channels = inplanes

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, H, W) -> (B, out_channels)``."""
        return torch.flatten(F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1), 1)

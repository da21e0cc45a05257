"""C-Net: per-coefficient confidences for image-set aggregation (Deng et al. 2019, Sec. 4).

The C-Net reads two features of the (frozen) R-Net for each image: the stride-8 ``shallow`` map
(``(B, 256, 28, 28)`` for ResNet-50, ``(B, 32, 28, 28)`` for MobileNetV2) and the ``pooled``
feature (``(B, 2048)`` / ``(B, 1280)``), see :meth:`facerecon.nets.rnet.RNet.features`.
Architecture as in the paper: three 3x3 convolutions with 256 channels, stride 2 and ReLU on
the shallow map, global average pooling, concatenation with the pooled feature, FC 512 + ReLU,
FC ``n_id`` and a sigmoid, giving a positive confidence for every identity coefficient
``(B, n_id)``. The last FC is zero-initialised (weights and bias), so an untrained C-Net outputs
0.5 everywhere and element-wise aggregation (:func:`facerecon.aggregate.s4_elementwise`)
starts as plain averaging.

Files: :func:`save_cnet` stores ``{"format", "config", "state_dict", "meta"}``;
:func:`export_cnet_weights` the same with float16 tensors; :func:`load_cnet` reads either.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from facerecon.nets.rnet import RNet
from facerecon.nets.weights_file import load_weights, read_weights_file, save_weights, unwrap

__all__ = [
    "CNet",
    "CNetConfig",
    "export_cnet_weights",
    "load_cnet",
    "predict_set",
    "read_cnet_file",
    "rnet_outputs",
    "save_cnet",
]

FILE_FORMAT = "facerecon-cnet-1"


@dataclass
class CNetConfig:
    """What is needed to rebuild a :class:`CNet` (stored with its weights).

    Attributes:
        n_id: number of confidences per image (the identity basis size; 1 for a C-Net with one
            scalar score per image, aggregation strategy S1).
        shallow_channels: channels of R-Net's shallow map (256 ResNet-50, 32 MobileNetV2).
        pooled_channels: channels of R-Net's pooled feature (2048 / 1280).
        conv_channels: channels of the three strided convolutions (256 in the paper).
        hidden: width of the first fully connected layer (512 in the paper).
    """

    n_id: int = 80
    shallow_channels: int = 256
    pooled_channels: int = 2048
    conv_channels: int = 256
    hidden: int = 512

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CNetConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class CNet(nn.Module):
    """Confidence network.

    Args:
        n_id: confidences per image (identity coefficients: 80 for BFM09, 40 for bfm-lite).
        shallow_channels, pooled_channels: R-Net feature sizes (see :meth:`for_rnet`).
        conv_channels, hidden: layer widths (paper: 256 and 512).

    Shapes: ``shallow (B, C_s, H, W)`` (H = W = 28 at 224 input; any size works), ``pooled
    (B, C_p)`` -> ``conf (B, n_id)`` in (0, 1).
    """

    def __init__(
        self,
        n_id: int,
        shallow_channels: int = 256,
        pooled_channels: int = 2048,
        conv_channels: int = 256,
        hidden: int = 512,
    ) -> None:
        super().__init__()
        if n_id < 1:
            raise ValueError(f"n_id must be >= 1, got {n_id}")
        self.config = CNetConfig(n_id, shallow_channels, pooled_channels, conv_channels, hidden)
        layers: list[nn.Module] = []
        cin = shallow_channels
        for _ in range(3):
            layers += [nn.Conv2d(cin, conv_channels, 3, stride=2, padding=1), nn.ReLU(True)]
            cin = conv_channels
        self.convs = nn.Sequential(*layers)
        self.fc1 = nn.Linear(conv_channels + pooled_channels, hidden)
        self.fc2 = nn.Linear(hidden, n_id)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    @classmethod
    def from_config(cls, config: CNetConfig) -> CNet:
        c = config
        return cls(c.n_id, c.shallow_channels, c.pooled_channels, c.conv_channels, c.hidden)

    @classmethod
    def for_rnet(cls, rnet: nn.Module, n_id: int | None = None, **kwargs: Any) -> CNet:
        """A C-Net sized for ``rnet``'s features (``n_id`` defaults to its identity size)."""
        net = unwrap(rnet, RNet)
        p = next(net.parameters())
        with torch.no_grad():
            probe = torch.zeros(1, 3, 64, 64, device=p.device, dtype=p.dtype)
            was = net.training
            net.eval()
            shallow_channels = net.features(probe)["shallow"].shape[1]
            net.train(was)
        return cls(
            net.layout.n_id if n_id is None else n_id,
            int(shallow_channels),
            net.pooled_channels,
            **kwargs,
        )

    @property
    def n_id(self) -> int:
        return self.config.n_id

    def logits(self, shallow: Tensor, pooled: Tensor) -> Tensor:
        """Pre-sigmoid outputs ``(B, n_id)``."""
        x = self.convs(shallow).mean(dim=(-2, -1))
        h = torch.relu(self.fc1(torch.cat([x, pooled.to(x.dtype)], dim=-1)))
        return self.fc2(h)

    def forward(self, shallow: Tensor, pooled: Tensor) -> Tensor:
        """Confidences ``(B, n_id)`` in (0, 1) from R-Net features (see the class docstring)."""
        return torch.sigmoid(self.logits(shallow, pooled))

    def extra_repr(self) -> str:
        c = self.config
        return f"n_id={c.n_id}, shallow={c.shallow_channels}, pooled={c.pooled_channels}"


def save_cnet(
    net: nn.Module, path: str | os.PathLike[str], meta: dict[str, Any] | None = None
) -> Path:
    """Save weights (as held) with the :class:`CNetConfig` and optional ``meta`` (the trainer
    stores the R-Net configuration it was trained on under ``meta["rnet_config"]``)."""
    return save_weights(net, CNet, path, FILE_FORMAT, None, meta)


def export_cnet_weights(
    net: nn.Module, path: str | os.PathLike[str], meta: dict[str, Any] | None = None
) -> Path:
    """Save a float16 copy for distribution; :func:`load_cnet` upcasts it."""
    return save_weights(net, CNet, path, FILE_FORMAT, torch.float16, meta)


def read_cnet_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw payload of a C-Net file; raises :class:`ModelFileError` when unusable."""
    return read_weights_file(path, FILE_FORMAT, "C-Net")


def load_cnet(
    path: str | os.PathLike[str],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> CNet:
    """Rebuild a :class:`CNet` from :func:`save_cnet` / :func:`export_cnet_weights` output
    (half-precision files are upcast to ``dtype``); returned in eval mode."""
    return load_weights(
        path,
        FILE_FORMAT,
        "C-Net",
        lambda c: CNet.from_config(CNetConfig.from_dict(c)),
        device,
        dtype,
    )


def rnet_outputs(rnet: nn.Module, images: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """R-Net coefficients and features from one backbone pass (with gradients if enabled).

    ``images (B, 3, H, W)`` -> ``coeffs (B, layout.size)``, ``{"shallow", "pooled"}``; the
    coefficients equal ``rnet(images)``.
    """
    net = unwrap(rnet, RNet)
    feats = net.features(images)
    return net.head(feats["pooled"]), feats


@torch.no_grad()
def predict_set(
    rnet: nn.Module, cnet: nn.Module, images: Tensor, batch_size: int = 32
) -> tuple[Tensor, Tensor]:
    """Per-image R-Net coefficients and C-Net confidences of aligned crops (eval mode).

    Args:
        rnet: an :class:`RNet`; cnet: a :class:`CNet` built for it.
        images: ``(M, 3, 224, 224)`` RGB in 0..1 (moved to the nets' device and dtype).
        batch_size: chunk size.

    Returns:
        ``coeffs (M, layout.size)`` and ``conf (M, n_id)`` on the images' device. Aggregate
        with ``facerecon.aggregate.aggregate_set(coeffs, conf, rnet.layout, strategy)``.
    """
    r, c = getattr(rnet, "module", rnet), unwrap(cnet, CNet)
    modes = (r.training, c.training)
    r.eval()
    c.eval()
    p = next(r.parameters())
    coeffs, conf = [], []
    try:
        for chunk in images.split(max(1, batch_size)):
            k, f = rnet_outputs(r, chunk.to(device=p.device, dtype=p.dtype))
            coeffs.append(k)
            conf.append(c(f["shallow"], f["pooled"]))
    finally:
        r.train(modes[0])
        c.train(modes[1])
    if not coeffs:
        return images.new_zeros(0, r.layout.size), images.new_zeros(0, c.n_id)
    return torch.cat(coeffs).to(images.device), torch.cat(conf).to(images.device)

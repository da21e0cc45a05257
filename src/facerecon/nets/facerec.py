"""dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1``) in plain PyTorch.

The network is rebuilt from dlib's own model file (parsed by :mod:`facerecon.nets.dlib_format`):
input ``(rgb_0_255 - mean_rgb) / 256``, a 7x7/2 conv + max-pool stem, residual blocks (two 3x3
convs; downsampling blocks use a stride-2 first conv and an average-pooled shortcut whose extra
channels / rows / columns are zero, exactly like dlib's ``add_prev``), a global average pool and
a bias-free 256 -> 128 linear layer. dlib's inference ``affine`` layers (frozen batch norm) are
folded into the preceding convolutions. Everything is differentiable.

:func:`facerec_crop` reproduces ``dlib.get_face_chip(img, shape68, size=150, padding=0.25)``
differentiably (``grid_sample``), see its docstring for the exact recipe.

Typical use (perceptual loss)::

    net = load_facerec(device=image.device)          # frozen, eval mode
    e = embed(net, image, lm68)                       # (B, 128)
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facerecon.cache import cache_dir
from facerecon.errors import ModelFileError
from facerecon.nets.dlib_format import (
    AddPrevSpec,
    AffineSpec,
    ConvSpec,
    DlibNetSpec,
    FcSpec,
    PoolSpec,
    ReluSpec,
    TagSpec,
    read_dlib_net,
)
from facerecon.nets.weights_file import atomic_save

__all__ = [
    "CHIP_LANDMARKS",
    "DLIB_MEAN_FACE",
    "DlibFaceNet",
    "convert_dlib_net",
    "default_facerec_path",
    "embed",
    "face_chip_transform",
    "facerec_crop",
    "load_facerec",
]

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
_CACHE_FORMAT = 1

# 0-based 68-point indices dlib's get_face_chip_details aligns (brows, jaw and lower lip left out).
CHIP_LANDMARKS: tuple[int, ...] = (*range(27, 55), *range(60, 65))

# dlib's mean face (chip-normalised x, y in 0..1, before padding) for CHIP_LANDMARKS, in order.
# Recovered numerically from the installed dlib by probing ``dlib.get_face_chip_details`` with
# perturbed landmarks and inverting its linear least-squares fit (dlib: Boost Software License);
# ``tests/test_facerec.py::test_mean_face_template_rederived_from_dlib`` re-derives and checks it.
DLIB_MEAN_FACE: tuple[tuple[float, float], ...] = (
    (0.490127, 0.203352), (0.490127, 0.307009), (0.490127, 0.409805), (0.490127, 0.515625),
    (0.366880, 0.587326), (0.426036, 0.609345), (0.490127, 0.628106), (0.554217, 0.609345),
    (0.613373, 0.587326), (0.121737, 0.216423), (0.187122, 0.178758), (0.265825, 0.179852),
    (0.334606, 0.231733), (0.260918, 0.245099), (0.182743, 0.244077), (0.645647, 0.231733),
    (0.714428, 0.179852), (0.793132, 0.178758), (0.858516, 0.216423), (0.797510, 0.244077),
    (0.719335, 0.245099), (0.254149, 0.780233), (0.340985, 0.745405), (0.428858, 0.727388),
    (0.490127, 0.742578), (0.551395, 0.727388), (0.639268, 0.745405), (0.726104, 0.780233),
    (0.290379, 0.784792), (0.428096, 0.778746), (0.490127, 0.785343), (0.552157, 0.778746),
    (0.689874, 0.784792),
)  # fmt: skip


# ============================================================================ alignment
def _template(n_points: int, size: int, padding: float, dtype: torch.dtype, device) -> Tensor:
    """Chip-pixel template ``(P, 2)`` for 68-point (33 used) or 5-point input."""
    mean = torch.tensor(DLIB_MEAN_FACE, dtype=torch.float64)
    if n_points == 5:
        pos = {j: i for i, j in enumerate(CHIP_LANDMARKS)}
        mean = torch.stack(
            [
                (mean[pos[36]] + mean[pos[39]]) / 2,
                (mean[pos[42]] + mean[pos[45]]) / 2,
                mean[pos[30]],
                mean[pos[48]],
                mean[pos[54]],
            ]
        )
    tmpl = (padding + mean) / (2 * padding + 1) * size
    return tmpl.to(device=device, dtype=dtype)


def _select_points(lm: Tensor) -> Tensor:
    if lm.ndim != 3 or lm.shape[-1] != 2 or lm.shape[1] not in (68, 5):
        raise ValueError(f"landmarks must be (B, 68, 2) or (B, 5, 2), got {tuple(lm.shape)}")
    if lm.shape[1] == 68:
        return lm[:, list(CHIP_LANDMARKS)]
    return lm


def fit_similarity(src: Tensor, dst: Tensor) -> Tensor:
    """Least-squares similarity ``dst ≈ s R src + t`` (no reflection), batched, differentiable.

    Args:
        src: (B, P, 2) or (P, 2) source points.
        dst: (B, P, 2) destination points.

    Returns:
        (B, 2, 3) matrix ``[[a, -b, tx], [b, a, ty]]`` with ``a = s cos θ, b = s sin θ``.
        Equals Umeyama's solution (what dlib's ``find_similarity_transform`` computes) whenever
        that solution is not a reflection.
    """
    src = src.expand_as(dst)
    ms, md = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    P, Q = src - ms, dst - md
    den = (P * P).sum((1, 2))
    a = (P * Q).sum((1, 2)) / den
    b = (P[..., 0] * Q[..., 1] - P[..., 1] * Q[..., 0]).sum(1) / den
    M = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)  # (B, 2, 2)
    t = md.squeeze(1) - (M @ ms.squeeze(1).unsqueeze(-1)).squeeze(-1)
    return torch.cat([M, t.unsqueeze(-1)], -1)


def face_chip_transform(
    lm: Tensor, size: int = 150, padding: float = 0.25
) -> tuple[Tensor, Tensor]:
    """Map from chip pixels to image pixels, as dlib's ``get_face_chip_details`` + extraction.

    dlib fits a similarity ``T`` from its mean-face template (scaled into the padded chip) to the
    33 inner-face landmarks, then describes the chip by a rectangle of width ``W = size * s``
    (``s`` = scale of ``T``), centred at ``T(size/2, size/2)`` and rotated by the angle of ``T``;
    chip pixels 0 and ``size - 1`` land on the rectangle's corners, whose extent is ``W - 1``.

    Args:
        lm: (B, 68, 2) image landmarks in pixels (OpenCV centre convention), or (B, 5, 2) with the
            project's 5 points (eye centres, nose tip, mouth corners) — an approximation that fits
            the same template's corresponding points; dlib itself uses the 68.
        size: chip side in pixels. padding: dlib's padding (fraction of the template size).

    Returns:
        affine (B, 2, 3): ``[x, y] = affine @ [u, v, 1]`` for chip pixel (u, v);
        rect_width (B,): dlib's chip-rectangle width ``W`` in image pixels (drives anti-aliasing).
    """
    pts = _select_points(lm)
    tmpl = _template(pts.shape[1], size, padding, pts.dtype, pts.device)
    T = fit_similarity(tmpl, pts)
    M, t = T[:, :, :2], T[:, :, 2]
    s = torch.sqrt(T[:, 0, 0] ** 2 + T[:, 1, 0] ** 2)
    centre = M @ torch.full((2, 1), size / 2, dtype=pts.dtype, device=pts.device)
    centre = centre.squeeze(-1) + t
    W = size * s
    k = ((W - 1) / (size - 1) / s).view(-1, 1, 1)
    A = k * M
    off = (
        centre
        - (A @ torch.full((2, 1), (size - 1) / 2, dtype=pts.dtype, device=pts.device))[..., 0]
    )
    return torch.cat([A, off.unsqueeze(-1)], -1), W


def _pyramid_levels(rect_width: Tensor, size: int) -> list[int]:
    """How many 2x pyramid reductions dlib applies before bilinear sampling (0 = none)."""
    out = []
    for w in rect_width.detach().double().cpu().tolist():
        n = 0
        while ((w + 1) / 2) ** 2 > size * size:  # dlib's rect_down on a width-w rectangle
            w = (w + 1) / 2
            n += 1
        out.append(n)
    return out


def _pyramid_down(x: Tensor) -> Tensor:
    """dlib's ``pyramid_down<2>``: 5-tap binomial blur, keep every 2nd pixel. (B,C,H,W) -> ~half.

    Output pixel ``o`` is the blur centred on input pixel ``2 o + 2`` (valid part only).
    """
    k1 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=x.dtype, device=x.device) / 16
    C = x.shape[1]
    kx = k1.view(1, 1, 1, 5).expand(C, 1, 1, 5)
    ky = k1.view(1, 1, 5, 1).expand(C, 1, 5, 1)
    x = F.conv2d(x, kx, stride=(1, 2), groups=C)
    return F.conv2d(x, ky, stride=(2, 1), groups=C)


def _sample(image: Tensor, affine: Tensor, size: int) -> Tensor:
    """Bilinear sample ``image`` (B,C,H,W) at ``affine @ [u, v, 1]`` for the chip grid."""
    B, _, H, W = image.shape
    r = torch.arange(size, dtype=image.dtype, device=image.device)
    v, u = torch.meshgrid(r, r, indexing="ij")
    uv1 = torch.stack([u, v, torch.ones_like(u)], -1).view(1, -1, 3, 1)
    xy = (affine.unsqueeze(1) @ uv1).squeeze(-1)  # (B, S*S, 2)
    scale = torch.tensor(
        [2.0 / max(W - 1, 1), 2.0 / max(H - 1, 1)], dtype=xy.dtype, device=xy.device
    )
    grid = (xy * scale - 1).view(B, size, size, 2)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _pyramid_crop(image: Tensor, affine: Tensor, n: int, size: int) -> Tensor:
    """dlib's pyramid path for one face: (1, C, H, W) image, (1, 2, 3) chip->image affine.

    dlib builds the pyramid on an integer sub-image: the bounding box of the rotated chip
    rectangle grown by ``g_n`` pixels (``g_0 = 2, g_{k+1} = 2 g_k + 2``), rounded and clipped to
    the image; its corner fixes the decimation phase. Coordinates go down the pyramid with
    ``point_down``: ``x' = (x - 2.5) / 2``, ``y' = (y - 1.5) / 2`` per level.
    """
    grow = 2.0
    for _ in range(n):
        grow = 2 * grow + 2
    corners = torch.tensor(
        [[0.0, 0.0, 1.0], [size - 1, 0.0, 1.0], [0.0, size - 1, 1.0], [size - 1, size - 1, 1.0]],
        dtype=affine.dtype,
        device=affine.device,
    )
    lo = (corners @ affine[0].detach().T).amin(0) - grow
    bx, by = (max(0, math.floor(float(v) + 0.5)) for v in lo)
    sub = image[:, :, by:, bx:]
    for _ in range(n):
        sub = _pyramid_down(sub)
    f = 0.5**n
    shift = torch.tensor([bx, by], dtype=affine.dtype, device=affine.device) * f + torch.tensor(
        [2.5, 1.5], dtype=affine.dtype, device=affine.device
    ) * (1 - f)
    a = torch.cat([affine[..., :2] * f, (affine[..., 2] * f - shift).unsqueeze(-1)], -1)
    return _sample(sub, a, size)


def facerec_crop(
    image: Tensor,
    lm68: Tensor,
    size: int = 150,
    padding: float = 0.25,
    antialias: bool = True,
) -> Tensor:
    """Differentiable equivalent of ``dlib.get_face_chip(img, shape, size, padding)``.

    Recipe (what dlib does, reproduced):
      1. similarity fit of dlib's mean face (33 inner points, padded) to the landmarks
         (:func:`face_chip_transform`);
      2. if the chip rectangle is more than twice the chip size, dlib first shrinks the image
         with its ``pyramid_down<2>`` (5-tap binomial blur + decimation) until it is not; we do
         the same (``antialias=True``) with dlib's sub-image anchoring and ``point_down`` mapping
         (see ``_pyramid_crop``);
      3. bilinear sampling at pixel centres, zero outside the image.
    dlib then truncates to uint8 (about -0.5 grey level per resampling step); we keep floats
    (differentiable). Gradients flow to ``image`` and to ``lm68``. When several faces are
    chipped in one dlib call, dlib anchors the pyramid on their joint bounding box; we always
    use the per-face box (what a single-face ``get_face_chip`` / ``compute_face_descriptor`` does).

    Args:
        image: (B, 3, H, W) float RGB in 0..1.
        lm68: (B, 68, 2) landmarks in image pixels (or (B, 5, 2), see :func:`face_chip_transform`).

    Returns:
        (B, 3, size, size) aligned face chips in 0..1.
    """
    if image.ndim != 4:
        raise ValueError(f"image must be (B, C, H, W), got {tuple(image.shape)}")
    lm = lm68.to(image.dtype)
    affine, rect_w = face_chip_transform(lm, size, padding)
    levels = _pyramid_levels(rect_w, size) if antialias else [0] * image.shape[0]
    if max(levels) == 0:
        return _sample(image, affine, size)
    chips = [
        _sample(image[i : i + 1], affine[i : i + 1], size)
        if n == 0
        else _pyramid_crop(image[i : i + 1], affine[i : i + 1], n, size)
        for i, n in enumerate(levels)
    ]
    return torch.cat(chips, 0)


# ============================================================================ network
def _conv_cfg(c: ConvSpec) -> list[int]:
    F_, C, kh, kw = c.weight.shape
    return [C, F_, kh, kw, *c.stride, *c.padding]


def _pool_cfg(p: PoolSpec) -> list[int]:
    return [*p.window, *p.stride, *p.padding]


def _make_conv(cfg: list[int]) -> nn.Conv2d:
    cin, cout, kh, kw, sy, sx, py, px = cfg
    return nn.Conv2d(cin, cout, (kh, kw), stride=(sy, sx), padding=(py, px), bias=True)


def _pool(x: Tensor, cfg: list[int], kind: str) -> Tensor:
    wy, wx, sy, sx, py, px = cfg
    if wy == 0 and wx == 0:
        return x.mean((2, 3), keepdim=True) if kind == "avg" else x.amax((2, 3), keepdim=True)
    if kind == "max":
        return F.max_pool2d(x, (wy, wx), (sy, sx), (py, px))
    return F.avg_pool2d(x, (wy, wx), (sy, sx), (py, px), count_include_pad=False)


def _add_prev(a: Tensor, b: Tensor) -> Tensor:
    """dlib ``add_prev``: sum of two (B,C,H,W) tensors, each zero-extended to the larger shape."""
    C, H, W = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(x: Tensor) -> Tensor:
        if x.shape[1:] == (C, H, W):
            return x
        return F.pad(x, (0, W - x.shape[3], 0, H - x.shape[2], 0, C - x.shape[1]))

    return grow(a) + grow(b)


class DlibResBlock(nn.Module):
    """``relu(add_prev(conv2(relu(conv1(x))), shortcut(x)))``; shortcut = x or avg_pool(x)."""

    def __init__(self, conv1: list[int], conv2: list[int], shortcut_pool: list[int] | None) -> None:
        super().__init__()
        self.conv1 = _make_conv(conv1)
        self.conv2 = _make_conv(conv2)
        self.shortcut_pool = shortcut_pool

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        skip = x if self.shortcut_pool is None else _pool(x, self.shortcut_pool, "avg")
        return F.relu(_add_prev(y, skip))


class DlibFaceNet(nn.Module):
    """dlib's face-recognition ResNet (29 convs) as a torch module.

    Built from an architecture dict (see :func:`convert_dlib_net`); load weights with
    :func:`load_facerec`. ``forward(chip (B, 3, 150, 150) RGB 0..1) -> (B, 128)`` descriptor
    (not normalised; dlib's same-person threshold is a Euclidean distance of 0.6).
    """

    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        self.arch = arch
        self.register_buffer(
            "mean_rgb",
            torch.tensor(arch["mean_rgb"], dtype=torch.float32).view(1, 3, 1, 1),
            persistent=False,
        )
        self.input_size = tuple(arch["input_size"])
        self.stem = _make_conv(arch["stem_conv"])
        self.stem_pool = arch["stem_pool"]
        self.blocks = nn.ModuleList(
            DlibResBlock(b["conv1"], b["conv2"], b["shortcut_pool"]) for b in arch["blocks"]
        )
        self.head_pool = arch["head_pool"]
        fc_in, fc_out, fc_bias = arch["fc"]
        self.fc = nn.Linear(fc_in, fc_out, bias=bool(fc_bias))

    def forward(self, chip: Tensor) -> Tensor:
        """chip: (B, 3, 150, 150) RGB in 0..1 -> (B, 128) descriptors."""
        if chip.ndim != 4 or chip.shape[1] != 3 or tuple(chip.shape[2:]) != self.input_size:
            raise ValueError(f"expected (B, 3, {self.input_size[0]}, {self.input_size[1]}), "
                             f"got {tuple(chip.shape)}")  # fmt: skip
        x = (chip * 255.0 - self.mean_rgb.to(chip.dtype)) / 256.0
        x = _pool(F.relu(self.stem(x)), self.stem_pool, "max")
        for block in self.blocks:
            x = block(x)
        x = _pool(x, self.head_pool, "avg").flatten(1)
        return self.fc(x)


def convert_dlib_net(spec: DlibNetSpec) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Turn a parsed dlib net into ``(arch, state_dict)`` for :class:`DlibFaceNet`.

    Expects dlib's ResNet idiom: ``con affine relu max_pool``, then residual units
    ``tag con affine relu con affine add_prev relu`` or (downsampling)
    ``tag con affine relu con affine tag skip avg_pool add_prev relu``, then a whole-map
    ``avg_pool`` and ``fc``. Affine layers are folded into the convs (in float64).
    Raises ModelFileError if the layer sequence differs.
    """
    L = spec.layers
    pos = 0
    state: dict[str, Tensor] = {}

    def take(*kinds: type) -> list[Any]:
        nonlocal pos
        got = L[pos : pos + len(kinds)]
        if len(got) != len(kinds) or not all(
            isinstance(g, k) for g, k in zip(got, kinds, strict=True)
        ):
            names = [type(g).__name__ for g in got]
            raise ModelFileError(f"unexpected dlib layer sequence at layer {pos}: {names}")
        pos += len(kinds)
        return got

    def fold(prefix: str, conv: ConvSpec, aff: AffineSpec) -> list[int]:
        F_ = conv.weight.shape[0]
        if aff.gamma.size != F_:
            raise ModelFileError(
                f"affine size {aff.gamma.size} does not match conv {F_} at {prefix}"
            )
        g = aff.gamma.astype(np.float64)
        w = conv.weight.astype(np.float64) * g[:, None, None, None]
        b = conv.bias.astype(np.float64) * g + aff.beta.astype(np.float64)
        state[f"{prefix}.weight"] = torch.from_numpy(w.astype(np.float32))
        state[f"{prefix}.bias"] = torch.from_numpy(b.astype(np.float32))
        return _conv_cfg(conv)

    conv, aff, _, pool = take(ConvSpec, AffineSpec, ReluSpec, PoolSpec)
    if pool.kind != "max" or conv.weight.shape[1] != 3:
        raise ModelFileError("unexpected dlib network stem")
    arch: dict[str, Any] = {
        "mean_rgb": list(spec.input.mean_rgb),
        "input_size": list(spec.input.size),
        "stem_conv": fold("stem", conv, aff),
        "stem_pool": _pool_cfg(pool),
        "blocks": [],
    }
    channels = conv.weight.shape[0]
    while pos < len(L) and isinstance(L[pos], TagSpec):
        i = len(arch["blocks"])
        _, c1, a1, _, c2, a2 = take(TagSpec, ConvSpec, AffineSpec, ReluSpec, ConvSpec, AffineSpec)
        if c1.weight.shape[1] != channels or c2.weight.shape[1] != c1.weight.shape[0]:
            raise ModelFileError(f"channel mismatch in dlib residual block {i}")
        block = {
            "conv1": fold(f"blocks.{i}.conv1", c1, a1),
            "conv2": fold(f"blocks.{i}.conv2", c2, a2),
            "shortcut_pool": None,
        }
        if isinstance(L[pos], TagSpec):
            _, _, sp, _, _ = take(TagSpec, TagSpec, PoolSpec, AddPrevSpec, ReluSpec)
            if sp.kind != "avg":
                raise ModelFileError(f"unexpected shortcut pooling in dlib residual block {i}")
            block["shortcut_pool"] = _pool_cfg(sp)
        else:
            take(AddPrevSpec, ReluSpec)
        channels = c2.weight.shape[0]
        arch["blocks"].append(block)
    head, fc = take(PoolSpec, FcSpec)
    if pos != len(L) or head.kind != "avg" or fc.weight.shape[0] != channels:
        raise ModelFileError("unexpected dlib network head")
    arch["head_pool"] = _pool_cfg(head)
    arch["fc"] = [fc.weight.shape[0], fc.weight.shape[1], int(fc.bias is not None)]
    state["fc.weight"] = torch.from_numpy(np.ascontiguousarray(fc.weight.T))
    if fc.bias is not None:
        state["fc.bias"] = torch.from_numpy(fc.bias)
    return arch, state


# ============================================================================ loading
def default_facerec_path() -> Path:
    """``dlib_face_recognition_resnet_model_v1.dat`` from the installed face_recognition_models."""
    try:
        import face_recognition_models
    except ImportError as exc:
        raise ModelFileError(
            "face_recognition_models is not installed; pass the path to " + MODEL_FILE
        ) from exc
    return Path(face_recognition_models.__file__).parent / "models" / MODEL_FILE


def _file_key(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"{path.stat().st_size}_{h.hexdigest()[:24]}"


def load_facerec(
    path: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    cache: bool = True,
) -> DlibFaceNet:
    """Load dlib's face descriptor as a frozen :class:`DlibFaceNet` in eval mode.

    The converted weights are cached as ``$FACERECON_CACHE/dlib_facerec_<size>_<sha256>.pt``
    (default ``~/.cache/facerecon``), so later loads skip parsing. Parameters have
    ``requires_grad=False``; gradients still flow to the input.
    """
    p = Path(path) if path is not None else default_facerec_path()
    if not p.is_file():
        raise ModelFileError(f"dlib face recognition model not found: {p}")
    key = _file_key(p)
    cached = cache_dir() / f"dlib_facerec_{key}.pt"
    payload = None
    if cache and cached.is_file():
        try:
            payload = torch.load(cached, map_location="cpu", weights_only=True)
            if payload.get("format") != _CACHE_FORMAT:
                payload = None
        except Exception:  # a corrupt cache is rebuilt, never fatal
            payload = None
    if payload is None:
        arch, state = convert_dlib_net(read_dlib_net(p))
        payload = {"format": _CACHE_FORMAT, "arch": arch, "state_dict": state}
        if cache:
            with contextlib.suppress(OSError):  # read-only cache: just convert every time
                atomic_save(payload, cached)
    net = DlibFaceNet(payload["arch"])
    net.load_state_dict(payload["state_dict"])
    net.requires_grad_(False).eval()
    return net.to(device=device, dtype=dtype)


def embed(net: DlibFaceNet, image: Tensor, lm68: Tensor) -> Tensor:
    """Descriptor (B, 128) of the face in ``image`` (B, 3, H, W) 0..1 with ``lm68`` (B, 68, 2)."""
    size = net.input_size[0]
    return net(facerec_crop(image, lm68, size=size))

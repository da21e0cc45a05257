"""Skin probability maps and the paper's skin attention, for numpy and torch images."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from facerecon.errors import ImageError
from facerecon.skin.model import (
    SkinModel,
    load_skin_model,
    mixture_log_prob_torch,
    rgb_to_features,
    rgb_to_features_torch,
)

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

#: Mean per-pixel chroma (max - min of R, G, B, in 0..255) under which an image counts as gray.
GRAY_CHROMA = 2.0
_GRAY_POLICIES = ("ones", "model")


def _stable_sigmoid_np(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def is_grayscale(image: ArrayT, tol: float = GRAY_CHROMA) -> bool | torch.Tensor:
    """Whether an image carries no colour (mean chroma below ``tol`` in 0..255 units).

    Args:
        image: numpy ``(H, W, 3)`` uint8 RGB, or torch ``(B, 3, H, W)`` float 0..1.

    Returns:
        bool (numpy) or ``(B,)`` bool tensor (torch).
    """
    if isinstance(image, torch.Tensor):
        x = image.detach().float()
        chroma = (x.amax(dim=1) - x.amin(dim=1)).flatten(1).mean(dim=1) * 255.0
        return chroma < tol
    x = np.asarray(image)
    x = x.astype(np.float32) * (255.0 if x.dtype.kind == "f" else 1.0)
    return bool(np.mean(x.max(axis=-1) - x.min(axis=-1)) < tol)


def skin_probability(image: ArrayT, model: SkinModel | None = None, gray: str = "ones") -> ArrayT:
    """Per-pixel posterior probability of skin from colour alone.

    Args:
        image: numpy ``(H, W, 3)`` uint8 RGB (float 0..1 also accepted), or torch
            ``(B, 3, H, W)`` float RGB in 0..1 (any float dtype, any device).
        model: skin model; the shipped one (``skin_gmm.npz``) when None.
        gray: what to return for an image without colour (see :func:`is_grayscale`), where a
            colour classifier has nothing to go on: "ones" (default) gives P = 1 everywhere,
            i.e. attention 1 and the photometric loss falls back to the rendered face mask;
            "model" runs the classifier anyway (it rates gray pixels as non-skin).

    Returns:
        numpy ``(H, W)`` float32, or torch ``(B, 1, H, W)`` in the input's dtype and device.

    Raises:
        ImageError: wrong shape or dtype.
    """
    if gray not in _GRAY_POLICIES:
        raise ImageError(f"gray must be one of {_GRAY_POLICIES}, got {gray!r}")
    model = model or load_skin_model()
    if isinstance(image, torch.Tensor):
        return _skin_probability_torch(image, model, gray)
    return _skin_probability_np(np.asarray(image), model, gray)


def _skin_probability_np(image: np.ndarray, model: SkinModel, gray: str) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    if image.dtype == np.uint8:
        rgb = image
    elif image.dtype.kind == "f":
        rgb = np.clip(image, 0.0, 1.0) * 255.0
    else:
        raise ImageError(f"expected a uint8 or float image, got {image.dtype}")
    h, w = image.shape[:2]
    if gray == "ones" and is_grayscale(image):
        return np.ones((h, w), np.float32)
    if rgb.dtype == np.uint8:
        # evaluate each distinct colour once (photos hold far fewer colours than pixels)
        flat = rgb.reshape(-1, 3).astype(np.int32)
        keys, inverse = np.unique(
            (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2], return_inverse=True
        )
        colours = np.stack([keys >> 16, (keys >> 8) & 255, keys & 255], axis=1)
        prob = _stable_sigmoid_np(model.log_odds(rgb_to_features(colours, model.space)))
        return prob[inverse.reshape(-1)].reshape(h, w).astype(np.float32)
    feats = rgb_to_features(rgb.reshape(-1, 3), model.space)
    return _stable_sigmoid_np(model.log_odds(feats)).reshape(h, w).astype(np.float32)


def _skin_probability_torch(image: torch.Tensor, model: SkinModel, gray: str) -> torch.Tensor:
    if image.dim() != 4 or image.shape[1] != 3 or not image.is_floating_point():
        raise ImageError(
            f"expected a float (B, 3, H, W) RGB tensor, got {tuple(image.shape)} {image.dtype}"
        )
    out_dtype = image.dtype
    x = image if out_dtype in (torch.float32, torch.float64) else image.float()
    b, _, h, w = x.shape
    rgb = x.clamp(0.0, 1.0).permute(0, 2, 3, 1).reshape(-1, 3) * 255.0
    feats = rgb_to_features_torch(rgb, model.space)
    log_odds = (
        mixture_log_prob_torch(feats, model.skin)
        - mixture_log_prob_torch(feats, model.nonskin)
        + float(np.log(model.prior / (1.0 - model.prior)))
    )
    prob = torch.sigmoid(log_odds).reshape(b, 1, h, w)
    if gray == "ones":
        prob = torch.where(is_grayscale(x)[:, None, None, None], torch.ones_like(prob), prob)
    return prob.to(out_dtype)


def skin_attention(prob: ArrayT) -> ArrayT:
    """The paper's skin attention: ``A = 1 where P > 0.5, else P``.

    Args:
        prob: skin probabilities, numpy or torch, any shape.

    Returns:
        attention of the same type, shape and dtype.
    """
    if isinstance(prob, torch.Tensor):
        return torch.where(prob > 0.5, torch.ones_like(prob), prob)
    prob = np.asarray(prob)
    return np.where(prob > 0.5, np.ones_like(prob), prob)

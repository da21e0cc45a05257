"""Training augmentation of aligned crops: random similarity warp and horizontal flip.

All functions work on one sample in numpy (``(S, S, 3)`` uint8 crop, ``(68, 2)`` landmarks in
crop pixels, optional ``(S, S)`` attention) and take an explicit ``numpy.random.Generator``, so a
sample's augmentation is a pure function of its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from facerecon.labels import FLIP_68

__all__ = [
    "FLIP_68",
    "AugmentConfig",
    "augment_sample",
    "augment_sample_depth",
    "flip_sample",
    "random_similarity",
    "warp_sample",
]


@dataclass
class AugmentConfig:
    """Random similarity warp of the aligned crop (released recipe) and horizontal flip.

    Attributes:
        shift: max translation in crop pixels (uniform in ±shift, per axis).
        scale: max relative scale change (uniform in 1 ± scale).
        rotation: max in-plane rotation in degrees (uniform in ±rotation).
        flip: probability of a horizontal flip (landmarks re-ordered with the 68-point flip
            permutation so that index i keeps naming the same facial point).
        enabled: False turns every augmentation off.
    """

    shift: float = 10.0
    scale: float = 0.1
    rotation: float = 10.0
    flip: float = 0.5
    enabled: bool = True


def random_similarity(
    rng: np.random.Generator, cfg: AugmentConfig, size: int
) -> tuple[np.ndarray, bool]:
    """Draw one augmentation: ``(2, 3)`` affine (crop -> augmented crop) and a flip flag.

    The warp rotates by ``U(±rotation)`` degrees and scales by ``U(1 ± scale)`` about the crop
    centre ``((size - 1) / 2, ...)``, then shifts by ``U(±shift)`` pixels per axis.
    """
    angle = math.radians(rng.uniform(-cfg.rotation, cfg.rotation))
    s = rng.uniform(1.0 - cfg.scale, 1.0 + cfg.scale)
    tx, ty = rng.uniform(-cfg.shift, cfg.shift, size=2)
    flip = bool(rng.random() < cfg.flip)
    c = (size - 1) / 2.0
    a, b = s * math.cos(angle), s * math.sin(angle)
    # q = A (p - c) + c + t with A = s R(angle); image y points down, so a positive angle turns
    # the face clockwise on screen.
    m = np.array([[a, -b, 0.0], [b, a, 0.0]])
    m[:, 2] = np.array([c, c]) - m[:, :2] @ np.array([c, c]) + np.array([tx, ty])
    return m, flip


def warp_sample(
    image: np.ndarray,
    lm68: np.ndarray,
    matrix: np.ndarray,
    attention: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Apply a ``(2, 3)`` affine to a crop (bilinear, black border), its landmarks and
    attention (border 0: no photometric loss outside the photo)."""
    size = (image.shape[1], image.shape[0])
    out = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    lm = lm68 @ matrix[:, :2].T + matrix[:, 2]
    att = None
    if attention is not None:
        att = cv2.warpAffine(attention, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0)
    return out, lm.astype(lm68.dtype), att


def flip_sample(
    image: np.ndarray, lm68: np.ndarray, attention: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mirror horizontally: pixel column ``c`` -> ``W - 1 - c``, landmarks re-indexed by
    :data:`FLIP_68`."""
    w = image.shape[1]
    lm = lm68.copy()
    lm[:, 0] = (w - 1) - lm[:, 0]
    att = None if attention is None else np.ascontiguousarray(attention[:, ::-1])
    return np.ascontiguousarray(image[:, ::-1]), lm[FLIP_68], att


def augment_sample(
    image: np.ndarray,
    lm68: np.ndarray,
    rng: np.random.Generator,
    cfg: AugmentConfig,
    attention: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Random warp then (maybe) flip; returns the inputs unchanged when ``cfg.enabled`` is False."""
    image, lm68, attention, _ = augment_sample_depth(image, lm68, None, rng, cfg, attention)
    return image, lm68, attention


def augment_sample_depth(
    image: np.ndarray,
    lm68: np.ndarray,
    depth: np.ndarray | None,
    rng: np.random.Generator,
    cfg: AugmentConfig,
    attention: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """:func:`augment_sample` (same draws from ``rng``) that also carries the landmarks'
    ``depth (68,)`` in crop pixels (:func:`facerecon.data.synthetic_prepared.landmark_depth`):
    scaled with the warp (an in-plane rotation and a shift leave depth alone) and re-indexed
    with the flip."""
    if not cfg.enabled:
        return image, lm68, attention, depth
    m, flip = random_similarity(rng, cfg, image.shape[0])
    image, lm68, attention = warp_sample(image, lm68, m, attention)
    if depth is not None:
        depth = np.asarray(depth) * math.sqrt(abs(np.linalg.det(m[:, :2])))
    if flip:
        image, lm68, attention = flip_sample(image, lm68, attention)
        if depth is not None:
            depth = depth[FLIP_68]
    return image, lm68, attention, depth

"""Backgrounds for synthetic faces: procedural textures, photo crops and drawn scenes.

Every function takes a seeded :class:`numpy.random.Generator` and returns a ``(S, S, 3)`` float32
RGB image in 0..1; nothing reads global random state.

Kinds (:func:`make_background`):

* ``"flat"``: one colour.
* ``"procedural"``: one of a linear / radial gradient, multi-octave value noise, rotated stripes
  or checks, soft blobs; often two of them blended.
* ``"photo"``: a random crop (scaled, flipped, colour-jittered) of the bundled public-domain
  ``assets/astronaut.jpg``, taken from areas away from the astronaut's face, or (half the time)
  a scene drawn with OpenCV (wall, floor, window, shelves, picture frames).
* ``"mixed"``: procedural 45 %, photo crop / scene 45 %, flat 10 %.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

__all__ = ["BACKGROUND_KINDS", "make_background", "photo_crop", "procedural", "scene"]

BACKGROUND_KINDS = ("procedural", "photo", "mixed", "flat")

_ASSET = Path(__file__).resolve().parents[1] / "assets" / "astronaut.jpg"
# Astronaut's face and shoulders-up in the 512 x 512 photo (x0, y0, x1, y1): crops avoid it.
_ASTRONAUT_FACE = (120, 20, 300, 230)


def _random_colour(rng: np.random.Generator, sat: float = 0.6) -> np.ndarray:
    """``(3,)`` RGB in 0..1 with a random hue and bounded saturation."""
    hsv = np.array(
        [[[rng.uniform(0, 180), rng.uniform(0, sat) * 255, rng.uniform(0.15, 0.95) * 255]]],
        dtype=np.float32,
    )
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255.0


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return x / size, y / size


def value_noise(rng: np.random.Generator, size: int, octaves: int = 4) -> np.ndarray:
    """``(S, S)`` smooth noise in 0..1: random grids of growing resolution, bicubic upsampled."""
    out = np.zeros((size, size), np.float32)
    amp, total = 1.0, 0.0
    cells = int(rng.integers(2, 5))
    for _ in range(octaves):
        grid = rng.random((cells, cells)).astype(np.float32)
        out += amp * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
        cells *= 2
    out /= total
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-6)


def procedural(rng: np.random.Generator, size: int) -> np.ndarray:
    """``(S, S, 3)`` procedural texture (gradient, noise, stripes, checks or blobs)."""
    x, y = _grid(size)
    kind = int(rng.integers(0, 5))
    c0, c1 = _random_colour(rng), _random_colour(rng)
    if kind == 0:  # linear gradient
        a = rng.uniform(0, 2 * np.pi)
        t = np.cos(a) * x + np.sin(a) * y
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    elif kind == 1:  # radial gradient
        cx, cy = rng.uniform(0, 1, 2)
        t = np.clip(np.hypot(x - cx, y - cy) / rng.uniform(0.5, 1.2), 0, 1)
    elif kind == 2:  # value noise
        t = value_noise(rng, size)
    elif kind == 3:  # stripes or checks
        a = rng.uniform(0, np.pi)
        f = rng.uniform(3, 20)
        u = np.cos(a) * x + np.sin(a) * y
        t = 0.5 + 0.5 * np.sin(2 * np.pi * f * u)
        if rng.random() < 0.4:
            v = -np.sin(a) * x + np.cos(a) * y
            t = ((np.sin(2 * np.pi * f * u) > 0) ^ (np.sin(2 * np.pi * f * v) > 0)).astype(
                np.float32
            )
        elif rng.random() < 0.5:
            t = (t > 0.5).astype(np.float32)
    else:  # blobs
        t = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(3, 12))):
            centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
            axes = (
                int(rng.integers(size // 16, size // 3)),
                int(rng.integers(size // 16, size // 3)),
            )
            cv2.ellipse(
                t, centre, axes, rng.uniform(0, 180), 0, 360, float(rng.uniform(0.3, 1)), -1
            )
        t = cv2.GaussianBlur(t, (0, 0), rng.uniform(1, size / 24))
        t = np.clip(t, 0, 1)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    if rng.random() < 0.5:  # blend with fine noise for texture
        n = value_noise(rng, size, octaves=5)[..., None]
        img = img * (0.8 + 0.4 * n)
    return np.clip(img, 0, 1).astype(np.float32)


@lru_cache(maxsize=1)
def _astronaut() -> np.ndarray:
    bgr = cv2.imread(str(_ASSET), cv2.IMREAD_COLOR)
    if bgr is None:  # pragma: no cover - the asset ships with the package
        raise FileNotFoundError(_ASSET)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def photo_crop(rng: np.random.Generator, size: int) -> np.ndarray:
    """``(S, S, 3)`` crop of the bundled photo that does not overlap the astronaut's face."""
    img = _astronaut()
    H, W = img.shape[:2]
    fx0, fy0, fx1, fy1 = _ASTRONAUT_FACE
    for _ in range(50):
        side = int(rng.integers(64, 200))
        x0, y0 = int(rng.integers(0, W - side)), int(rng.integers(0, H - side))
        if x0 + side <= fx0 or x0 >= fx1 or y0 + side <= fy0 or y0 >= fy1:
            break
    else:  # the lower right corner never overlaps the face
        side, x0, y0 = 150, W - 150, H - 150
    crop = cv2.resize(
        img[y0 : y0 + side, x0 : x0 + side], (size, size), interpolation=cv2.INTER_LINEAR
    )
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    gain = rng.uniform(0.7, 1.2, 3).astype(np.float32)
    return np.clip(crop * gain + rng.uniform(-0.08, 0.08), 0, 1).astype(np.float32)


def scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """``(S, S, 3)`` indoor-like scene: wall, floor, window, shelves, frames (OpenCV drawing)."""
    wall = _random_colour(rng, sat=0.35)
    img = np.empty((size, size, 3), np.float32)
    img[:] = wall
    img *= (0.85 + 0.3 * value_noise(rng, size, 3))[..., None]
    horizon = int(rng.uniform(0.55, 0.9) * size)
    floor = _random_colour(rng, sat=0.5)
    img[horizon:] = floor * (0.7 + 0.3 * value_noise(rng, size, 4)[horizon:, :, None])
    for _ in range(int(rng.integers(1, 4))):  # windows, doors, frames
        w, h = int(rng.integers(size // 8, size // 2)), int(rng.integers(size // 8, size // 2))
        x0, y0 = int(rng.integers(-w // 2, size)), int(rng.integers(-h // 2, horizon))
        frame = _random_colour(rng, sat=0.3).tolist()
        inner = (_random_colour(rng, sat=0.5) * rng.uniform(0.8, 1.3)).clip(0, 1).tolist()
        cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), inner, -1)
        cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), frame, int(rng.integers(2, 8)))
        if rng.random() < 0.5:  # window bars
            cv2.line(img, (x0 + w // 2, y0), (x0 + w // 2, y0 + h), frame, 2)
            cv2.line(img, (x0, y0 + h // 2), (x0 + w, y0 + h // 2), frame, 2)
    for _ in range(int(rng.integers(0, 3))):  # shelves with objects
        y = int(rng.integers(size // 8, horizon))
        col = _random_colour(rng, sat=0.4).tolist()
        cv2.line(img, (0, y), (size, y), col, int(rng.integers(3, 7)))
        for _ in range(int(rng.integers(2, 8))):
            bx = int(rng.integers(0, size))
            bw, bh = int(rng.integers(4, size // 12)), int(rng.integers(8, size // 6))
            cv2.rectangle(img, (bx, y - bh), (bx + bw, y), _random_colour(rng).tolist(), -1)
    light = np.clip(1.1 - 0.5 * _grid(size)[int(rng.integers(0, 2))], 0.6, 1.1)
    if rng.random() < 0.5:
        light = light[:, ::-1]
    img = cv2.GaussianBlur(img * light[..., None], (0, 0), rng.uniform(0.5, 2.5))
    return np.clip(img, 0, 1).astype(np.float32)


def make_background(rng: np.random.Generator, size: int, kind: str = "mixed") -> np.ndarray:
    """``(S, S, 3)`` float32 RGB background of ``kind`` (see the module docstring)."""
    if kind == "mixed":
        r = rng.random()
        kind = "procedural" if r < 0.45 else ("photo" if r < 0.9 else "flat")
    if kind == "flat":
        return np.broadcast_to(_random_colour(rng), (size, size, 3)).astype(np.float32)
    if kind == "procedural":
        return procedural(rng, size)
    if kind == "photo":
        return photo_crop(rng, size) if rng.random() < 0.5 else scene(rng, size)
    raise ValueError(f"unknown background kind {kind!r}; use one of {BACKGROUND_KINDS}")

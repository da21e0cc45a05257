"""Image overlays: warp crop-space renders to the photo, blend, draw landmarks, save PNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facerecon.fileio import atomic_write_bytes
from facerecon.io._convert import as_numpy
from facerecon.io.paths import ensure_writable


def to_uint8(image: Any) -> np.ndarray:
    """Float images in 0..1 (or bool masks) to uint8 0..255; uint8 passes through."""
    img = as_numpy(image)
    if img.dtype == np.uint8:
        return img
    return np.round(np.clip(img.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def warp_to_original(
    crop_img: Any, crop_to_original: Any, out_shape: tuple[int, int]
) -> np.ndarray:
    """Warp a crop-space image ``(h, w)`` or ``(h, w, C)`` into the photo frame ``(H, W[, C])``.

    ``crop_to_original (2, 3)`` maps crop pixel coordinates to photo pixel coordinates
    (OpenCV convention, pixel centres at integers). Bilinear; outside the crop is 0.
    uint8 and float images keep their dtype; bool masks come back as float32 in 0..1.
    """
    img = as_numpy(crop_img)
    if img.dtype not in (np.uint8, np.float32, np.float64):  # bool masks, ints, float16
        img = img.astype(np.float32)
    M = as_numpy(crop_to_original, np.float64).reshape(2, 3)
    H, W = int(out_shape[0]), int(out_shape[1])

    def warp(a: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(
            a, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )

    if img.ndim == 2:
        return warp(img)
    # cv2 handles at most 4 channels per call.
    parts = [warp(np.ascontiguousarray(img[..., i : i + 4])) for i in range(0, img.shape[2], 4)]
    parts = [p[..., None] if p.ndim == 2 else p for p in parts]
    return np.concatenate(parts, axis=2)


def overlay_image(photo: Any, render: Any, mask: Any, alpha: float = 0.7) -> np.ndarray:
    """Blend a render onto a photo: ``out = photo * (1 - alpha*m) + render * alpha*m``.

    photo (H, W, 3) uint8; render (H, W, 3) float 0..1 or uint8; mask (H, W) float 0..1.
    Returns (H, W, 3) uint8 (rounded).
    """
    base = to_uint8(photo).astype(np.float64)
    ren = as_numpy(render)
    ren = ren.astype(np.float64) if ren.dtype == np.uint8 else np.clip(ren, 0, 1) * 255.0
    m = np.clip(as_numpy(mask, np.float64), 0.0, 1.0)
    if m.ndim == 3:
        m = m[..., 0]
    if base.shape[:2] != ren.shape[:2] or base.shape[:2] != m.shape:
        raise ValueError(
            f"photo {base.shape}, render {ren.shape} and mask {m.shape} must share (H, W)"
        )
    w = alpha * m[..., None]
    out = base * (1.0 - w) + ren[..., :3] * w
    return np.round(np.clip(out, 0.0, 255.0)).astype(np.uint8)


def scaled_transform(matrix: Any, scale: float | tuple[float, float]) -> np.ndarray:
    """``(2, 3)`` affine map to photo pixels -> the same map to the photo resized by
    ``scale`` (one factor, or ``(sx, sy)``; pixel centres stay pixel centres:
    ``x' = (x + 0.5) * s - 0.5``)."""
    M = as_numpy(matrix, np.float64).reshape(2, 3).copy()
    s = np.broadcast_to(np.asarray(scale, np.float64), (2,))[:, None]
    M *= s
    M[:, 2:] += 0.5 * s - 0.5
    return M


def overlay_on_photo(
    photo: Any,
    crop_render: Any,
    crop_mask: Any,
    crop_to_original: Any,
    max_side: int = 0,
    alpha: float = 0.7,
) -> tuple[np.ndarray, float]:
    """A crop-space render blended onto the photo, the photo downscaled first so its longer
    side is at most ``max_side`` (0: full size).

    Only the part of the photo the crop covers is warped and blended (the rest is a copy),
    so the cost follows the face's size, not the photo's.

    Args:
        photo: ``(H, W, 3)`` uint8 RGB.
        crop_render: ``(S, S, 3)`` float 0..1 (or uint8); crop_mask: ``(S, S)`` 0..1.
        crop_to_original: ``(2, 3)`` crop pixels -> photo pixels.

    Returns:
        ``(image (H', W', 3) uint8, scale)`` with ``H' = round(H * scale)``; photo pixel
        ``x`` is at ``(x + 0.5) * scale - 0.5`` in it.
    """
    photo = to_uint8(photo)
    h, w = photo.shape[:2]
    scale = 1.0 if not max_side or max(h, w) <= max_side else max_side / max(h, w)
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        out = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    else:
        out = photo.copy()
    M = scaled_transform(crop_to_original, scale)
    crop_h, crop_w = as_numpy(crop_mask).shape[:2]
    corners = np.array([[0, 0], [crop_w - 1, 0], [0, crop_h - 1], [crop_w - 1, crop_h - 1]])
    pts = corners @ M[:, :2].T + M[:, 2]
    H, W = out.shape[:2]
    x0, y0 = np.clip(np.floor(pts.min(axis=0)).astype(int) - 1, 0, [W, H])
    x1, y1 = np.clip(np.ceil(pts.max(axis=0)).astype(int) + 2, 0, [W, H])
    if x1 <= x0 or y1 <= y0:
        return out, scale
    M_roi = M.copy()
    M_roi[:, 2] -= (x0, y0)
    shape = (y1 - y0, x1 - x0)
    render_roi = warp_to_original(crop_render, M_roi, shape)
    mask_roi = warp_to_original(crop_mask, M_roi, shape)
    out[y0:y1, x0:x1] = overlay_image(out[y0:y1, x0:x1], render_roi, mask_roi, alpha)
    return out, scale


def default_radius(shape: tuple[int, ...]) -> int:
    """Landmark dot radius for an image of ``shape``: about 1/250 of the short side, >= 1."""
    return max(1, round(min(shape[0], shape[1]) / 250))


def draw_landmarks(
    image: Any,
    points: Any,
    color: tuple[int, int, int] = (0, 255, 0),
    radius: int | None = None,
) -> np.ndarray:
    """Draw filled dots at ``points (K, 2)`` (x=col, y=row) on a copy of an RGB ``image``.

    ``color`` is RGB. ``radius`` defaults to :func:`default_radius`. Non-finite points are
    skipped. Call twice to show detected and projected landmarks in two colours.
    """
    out = to_uint8(image)
    out = np.ascontiguousarray(np.repeat(out[..., None], 3, axis=2) if out.ndim == 2 else out)
    out = out.copy()
    pts = as_numpy(points, np.float64).reshape(-1, 2)
    r = default_radius(out.shape) if radius is None else int(radius)
    shift = 4  # sub-pixel precision: coordinates in 1/16 px
    colour = tuple(int(c) for c in color) + ((255,) if out.shape[2] == 4 else ())
    for x, y in pts[np.isfinite(pts).all(axis=1)]:
        centre = (round(x * (1 << shift)), round(y * (1 << shift)))
        cv2.circle(out, centre, r << shift, colour, -1, cv2.LINE_AA, shift)
    return out


#: zlib level of the PNGs we write: 1 encodes a 1080p photo in ~0.12 s against ~0.45 s at
#: PNG's default 6, for files ~7 % larger (BENCHMARKS.md "Throughput")
PNG_LEVEL = 1
#: the row filter of the PNGs we write: libpng's default tries every filter on every row;
#: "up" alone encodes a 1080p overlay in 57 ms against 101 ms and a 1024 texture in 28 ms
#: against 47 ms, with files 2-4 % smaller (measured 2026-12-06, OpenCV 4.14)
PNG_FILTER = getattr(cv2, "IMWRITE_PNG_FILTER_UP", None)  # OpenCV >= 4.11 has the flag


def png_bytes(image: Any, level: int = PNG_LEVEL) -> bytes:
    """PNG file bytes of an RGB/RGBA/gray image (uint8, or float in 0..1)."""
    img = to_uint8(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3:  # OpenCV writes BGR(A)
        img = img[..., [2, 1, 0, 3][: img.shape[2]]]
    params = [cv2.IMWRITE_PNG_COMPRESSION, level]
    if PNG_FILTER is not None:
        params += [cv2.IMWRITE_PNG_FILTER, PNG_FILTER]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img), params)
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {img.shape}")
    return buf.tobytes()


def save_png(
    path: str | os.PathLike, image: Any, overwrite: bool = False, level: int = PNG_LEVEL
) -> Path:
    """Save an RGB/RGBA/gray image (uint8, or float in 0..1) as PNG, atomically; returns the
    path."""
    path = ensure_writable(path, overwrite)
    return atomic_write_bytes(path, png_bytes(image, level))

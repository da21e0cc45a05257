"""The paper's alignment of a photo to the 224 x 224 network crop.

Five points are taken from the 68 (``facerecon.labels.FIVE_POINT_GROUPS``: eye centres
``mean(36, 39)`` and ``mean(42, 45)``, nose tip 30, mouth corners 48 and 54). A scale ``s`` and
translation ``t`` (no rotation) are fitted by least squares so that ``s * p + t`` matches a
standard 5-point template in the crop; the photo is then resampled into the crop with
``crop = s * photo + t`` in OpenCV pixel-centre coordinates. Pixels outside the photo are filled
with ``fill`` (default black, 0, as the released code's PIL crop does); ``AlignedFace.valid`` marks
the pixels that came from the photo.

The template is the default face model's mean 68 landmark vertices projected by the project
camera at zero pose (``scene = mm / 100``, ``d = 10 - z``, ``u = 112 + 1015 x / d``,
``v = 112 - 1015 y / d``), reduced to 5 points in the crop, so a mean face rendered at zero pose
lines up with the crop. :func:`template_from_model` recomputes it from a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from facerecon.geometry import project_points
from facerecon.labels import FIVE_POINT_GROUPS

__all__ = [
    "DEFAULT_TEMPLATE_224",
    "AlignedFace",
    "CropTransform",
    "align",
    "align_batch",
    "crop_to_original",
    "fit_scale_translation",
    "five_points",
    "template_for_size",
    "template_from_model",
]

# 5-point template in the 224 crop (x, y): right-eye centre (image left), left-eye centre,
# nose tip, right mouth corner (image left), left mouth corner.
# template_from_model(load_face_model("bfm-lite")) rounded to 1e-3 px;
# tests/test_detect_align.py checks these constants against the model.
DEFAULT_TEMPLATE_224 = np.array(
    [
        [80.071, 88.620],
        [143.591, 88.682],
        [112.261, 123.676],
        [85.744, 157.615],
        [137.772, 157.643],
    ]
)


def five_points(lm68: np.ndarray) -> np.ndarray:
    """The paper's 5 alignment points from iBUG-68.

    Args:
        lm68: ``(..., 68, 2)`` (or ``(..., 68, 3)``) points.

    Returns:
        ``(..., 5, D)``: eye centre (36, 39), eye centre (42, 45), nose tip 30, mouth 48, 54.
    """
    lm = np.asarray(lm68, dtype=np.float64)
    return np.stack([lm[..., list(g), :].mean(axis=-2) for g in FIVE_POINT_GROUPS], axis=-2)


def template_from_model(
    model: Any, focal: float = 1015.0, center: float = 112.0, cam_dist: float = 10.0
) -> np.ndarray:
    """5-point template ``(5, 2)`` of a face model's mean shape projected at zero pose.

    Args:
        model: object with ``mean_shape (N, 3)`` in mm and ``landmarks68 (68,)`` vertex indices
            (a ``facerecon.morphable.MorphableModel``; torch tensors or numpy arrays).
        focal, center, cam_dist: the project camera (``facerecon.render.CameraConfig``).

    Returns:
        ``(5, 2)`` pixel coordinates in the 224 crop.
    """
    mean = _to_numpy(model.mean_shape)
    idx = _to_numpy(model.landmarks68).astype(np.int64)
    return five_points(project_points(mean[idx] / 100.0, focal, center, cam_dist))


def template_for_size(size: int, template: np.ndarray | None = None) -> np.ndarray:
    """Scale a 224-crop template to a ``size`` crop (pixel-centre convention)."""
    t = DEFAULT_TEMPLATE_224 if template is None else np.asarray(template, dtype=np.float64)
    if size == 224:
        return t.copy()
    return (t + 0.5) * (size / 224.0) - 0.5


def fit_scale_translation(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """Least-squares ``s, t`` minimising ``sum_i w_i |s * src_i + t - dst_i|^2`` (no rotation).

    Args:
        src, dst: ``(K, 2)`` corresponding points, K >= 2 and src not all equal.
        weights: optional ``(K,)`` non-negative weights.

    Returns:
        ``s`` (float) and ``t`` ``(2,)``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    ms, md = w @ src, w @ dst
    cs, cd = src - ms, dst - md
    var = float(w @ (cs**2).sum(axis=1))
    if var <= 1e-12:
        raise ValueError("alignment points are degenerate (all at one place)")
    s = float(w @ (cs * cd).sum(axis=1)) / var
    if s <= 0:
        raise ValueError("alignment points are mirrored or degenerate (negative scale)")
    return s, md - s * ms


@dataclass
class CropTransform:
    """``crop = scale * rot(original) + translation`` in OpenCV pixel-centre coordinates.

    ``rot`` is the identity unless the face was found only in the photo turned by
    ``rotation`` quarter turns (``np.rot90(photo, rotation)``, counter-clockwise; see
    :func:`rot90_points`): the crop is then cut from the turned photo, upright, and the maps
    below still go to and from the photo as it was given.

    Attributes:
        scale: ``s`` (crop pixels per original pixel).
        translation: ``(2,)`` ``t`` in crop pixels.
        original_size: ``(H, W)`` of the original photo (as given, not turned).
        crop_size: ``(H, W)`` of the crop.
        rotation: quarter turns ``k`` in 0..3.
    """

    scale: float
    translation: np.ndarray
    original_size: tuple[int, int]
    crop_size: tuple[int, int] = (224, 224)
    rotation: int = 0

    def to_crop(self, points: Any) -> Any:
        """Original-photo pixels ``(..., 2)`` -> crop pixels (numpy or torch, any dtype)."""
        turned = rot90_points(points, self.rotation, self.original_size)
        return turned * self.scale + _like(self.translation, points)

    def to_original(self, points: Any) -> Any:
        """Crop pixels ``(..., 2)`` -> original-photo pixels (numpy or torch, any dtype)."""
        turned = (points - _like(self.translation, points)) / self.scale
        return rot90_points(turned, self.rotation, self.original_size, inverse=True)

    @property
    def matrix_to_crop(self) -> np.ndarray:
        """``(2, 3)`` affine (OpenCV ``warpAffine`` convention) original -> crop."""
        s, (tx, ty) = self.scale, self.translation
        A = np.array([[s, 0.0, tx], [0.0, s, ty], [0.0, 0.0, 1.0]])
        return (A @ _rot90_matrix(self.rotation, self.original_size))[:2]

    @property
    def matrix_to_original(self) -> np.ndarray:
        """``(2, 3)`` affine crop -> original."""
        A = np.vstack([self.matrix_to_crop, [0.0, 0.0, 1.0]])
        return np.linalg.inv(A)[:2]

    def as_paper_params(self) -> np.ndarray:
        """``[w0, h0, s, tx, ty]`` like the released code keeps (here exactly our s and t;
        for an unturned photo)."""
        h0, w0 = self.original_size
        return np.array([w0, h0, self.scale, *self.translation], dtype=np.float64)


def _rot90_matrix(k: int, size: tuple[int, int]) -> np.ndarray:
    """``(3, 3)`` map of :func:`rot90_points` (pixel coordinates of an ``(H, W)`` image)."""
    h, w = size
    k %= 4
    if k == 0:
        return np.eye(3)
    if k == 1:
        return np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, w - 1.0], [0.0, 0.0, 1.0]])
    if k == 2:
        return np.array([[-1.0, 0.0, w - 1.0], [0.0, -1.0, h - 1.0], [0.0, 0.0, 1.0]])
    return np.array([[0.0, -1.0, h - 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def rot90_points(points: Any, k: int, size: tuple[int, int], inverse: bool = False) -> Any:
    """Pixel coordinates ``(..., 2)`` in an ``(H, W)`` image -> the same pixels in
    ``np.rot90(image, k)`` (``k`` quarter turns counter-clockwise); ``inverse``: from the
    turned image back (``size`` is the unturned image's either way). Numpy or torch."""
    k %= 4
    if k == 0:
        return points
    h, w = size
    x, y = points[..., 0], points[..., 1]
    if k == 2:
        cols = ((w - 1) - x, (h - 1) - y)  # its own inverse
    elif (k == 1) != inverse:  # forward quarter turn, or back from three
        cols = (y, (w - 1) - x) if not inverse else (y, (h - 1) - x)
    else:  # forward three quarter turns, or back from one
        cols = ((h - 1) - y, x) if not inverse else ((w - 1) - y, x)
    if hasattr(points, "new_tensor"):
        import torch

        return torch.stack(cols, dim=-1)
    return np.stack(cols, axis=-1)


@dataclass
class AlignedFace:
    """A face resampled into the network crop.

    Attributes:
        image: ``(S, S, 3)`` uint8 RGB crop.
        lm68: ``(68, 2)`` landmarks in crop pixels.
        transform: maps crop <-> original photo.
        valid: ``(S, S)`` bool, True where the crop pixel came from inside the photo.
    """

    image: np.ndarray
    lm68: np.ndarray
    transform: CropTransform
    valid: np.ndarray


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _like(t: np.ndarray, ref: Any) -> Any:
    if hasattr(ref, "new_tensor"):
        return ref.new_tensor(np.asarray(t, dtype=np.float64))
    return np.asarray(t, dtype=np.asarray(ref).dtype if np.asarray(ref).dtype.kind == "f" else None)


def _warp(
    image: np.ndarray, s: float, t: np.ndarray, size: int, fill: int | Sequence[int]
) -> np.ndarray:
    """Resample ``crop(q) = image((q - t) / s)``; area-averages first when shrinking a lot."""
    h, w = image.shape[:2]
    src = image
    sx = sy = s
    ox = oy = 0.0
    if s < 0.5:
        # Pre-shrink with INTER_AREA (anti-aliased), keeping the mapping exact:
        # resized = a * (p + 0.5) - 0.5 per axis, a = new / old.
        nw, nh = max(1, round(w * s * 2)), max(1, round(h * s * 2))
        src = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        ax, ay = nw / w, nh / h
        # crop = s * p + t, p = (r + 0.5) / a - 0.5  ->  crop = (s / a) r + s (0.5 / a - 0.5) + t
        sx, sy = s / ax, s / ay
        ox, oy = s * (0.5 / ax - 0.5), s * (0.5 / ay - 0.5)
    M = np.array([[sx, 0.0, t[0] + ox], [0.0, sy, t[1] + oy]])
    fill_val = (fill,) * 3 if isinstance(fill, int) else tuple(fill)
    return cv2.warpAffine(
        src,
        M,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=fill_val,
    )


def inside_photo(s: float, t: np.ndarray, size: int, photo_size: tuple[int, int]) -> np.ndarray:
    """``(size, size)`` bool: the crop pixels ``q`` whose photo point ``(q - t) / s`` lies
    inside an ``(H, W)`` photo, i.e. where the bilinear crop of the photo takes more than half
    of its value from the photo (the border's half pixel included). Computed per row and
    column, without warping a photo-sized mask."""
    h, w = photo_size
    q = np.arange(size, dtype=np.float64)
    x, y = (q - t[0]) / s, (q - t[1]) / s
    return ((y > -0.5) & (y < h - 0.5))[:, None] & ((x > -0.5) & (x < w - 0.5))[None, :]


def align(
    image: np.ndarray,
    lm68: np.ndarray,
    size: int = 224,
    template: np.ndarray | None = None,
    fill: int | Sequence[int] = 0,
) -> AlignedFace:
    """Align a photo to the network crop (paper's preprocessing; scale + translation only).

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo.
        lm68: ``(68, 2)`` landmarks in photo pixels.
        size: crop side; the 224 template is scaled to it.
        template: ``(5, 2)`` template in a 224 crop; default :data:`DEFAULT_TEMPLATE_224`.
        fill: value for crop pixels outside the photo (default 0, black).

    Returns:
        :class:`AlignedFace` with the crop, its landmarks and the transform.
    """
    lm = np.asarray(lm68, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"lm68 must be (68, 2), got {lm.shape}")
    tmpl = template_for_size(size, template)
    s, t = fit_scale_translation(five_points(lm), tmpl)
    h, w = image.shape[:2]
    crop = _warp(image, s, t, size, fill)
    valid = inside_photo(s, t, size, (h, w))
    tr = CropTransform(scale=s, translation=t, original_size=(h, w), crop_size=(size, size))
    return AlignedFace(image=crop, lm68=tr.to_crop(lm), transform=tr, valid=valid)


def align_batch(
    images: Sequence[np.ndarray],
    lm68: Sequence[np.ndarray] | np.ndarray,
    size: int = 224,
    template: np.ndarray | None = None,
    fill: int | Sequence[int] = 0,
) -> tuple[np.ndarray, np.ndarray, list[CropTransform]]:
    """Align several photos (or several faces of one photo: repeat the image).

    Returns:
        crops ``(B, S, S, 3)`` uint8, landmarks ``(B, 68, 2)`` in crop pixels, transforms.
    """
    if len(images) != len(lm68):
        raise ValueError(f"{len(images)} images but {len(lm68)} landmark sets")
    out = [align(im, lm, size, template, fill) for im, lm in zip(images, lm68, strict=True)]
    if not out:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros((0, 68, 2)), []
    return (
        np.stack([a.image for a in out]),
        np.stack([a.lm68 for a in out]),
        [a.transform for a in out],
    )


def crop_to_original(
    crop: np.ndarray,
    transform: CropTransform,
    background: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Warp a crop-space image (e.g. a render) back onto the original photo.

    Args:
        crop: ``(S, S, C)`` image in crop pixels (uint8 or float).
        transform: the crop's :class:`CropTransform`.
        background: ``(H, W, C)`` photo to paste onto; zeros if None.
        mask: ``(S, S)`` float/bool in crop pixels; where given, blends ``crop`` over
            ``background`` by the warped mask (e.g. the rendered face mask).

    Returns:
        ``(H, W, C)`` image in original-photo pixels, dtype of ``crop``.
    """
    h, w = transform.original_size
    M = transform.matrix_to_original
    warped = cv2.warpAffine(crop, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    if background is None and mask is None:
        return warped
    bg = np.zeros_like(warped) if background is None else np.asarray(background)
    m = np.ones(crop.shape[:2], np.float32) if mask is None else np.asarray(mask, np.float32)
    wm = cv2.warpAffine(m, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    if warped.ndim == 3:
        wm = wm[..., None]
    out = warped.astype(np.float32) * wm + bg.astype(np.float32) * (1.0 - wm)
    if np.issubdtype(crop.dtype, np.integer):
        out = np.clip(np.rint(out), 0, np.iinfo(crop.dtype).max)
    return out.astype(crop.dtype)

"""Face parse masks with :class:`facerecon.labels.Region` labels.

* :func:`parse_from_landmarks`: polygons from the 68 iBUG points or the 478 MediaPipe Face Mesh
  points (no network needed).
* :func:`parse_from_render`: labels of a rasterized face model (per-vertex labels).
* :func:`one_hot` and :func:`dfmvr_weight_map` (DF-MVR's photometric weight map).

Left/right are the subject's: iBUG 36-41 (image left in a frontal photo) is ``RIGHT_EYE`` and
17-21 ``RIGHT_BROW``; MediaPipe's "right" contours (outer eye corner 33) are the subject's right
too. Pixel coordinates follow OpenCV (pixel centres at integers).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from facerecon.labels import (
    FEATURE_REGIONS,
    IBUG_INNER_LIP,
    IBUG_JAW,
    IBUG_LEFT_BROW,
    IBUG_LEFT_EYE,
    IBUG_RIGHT_BROW,
    IBUG_RIGHT_EYE,
    NUM_PARSE_CLASSES,
    Region,
)

__all__ = [
    "dfmvr_weight_map",
    "face_polygon",
    "mesh_face_polygon",
    "one_hot",
    "parse_from_landmarks",
    "parse_from_render",
]

_SHIFT = 4  # sub-pixel bits for cv2 polygon drawing

# MediaPipe Face Mesh contours as ordered vertex rings, chained from the edge lists of
# ``mediapipe.python.solutions.face_mesh_connections`` (tests check them against it). Brows: the
# lower edge then the upper edge reversed. Lips: corner to corner (outer 61..291, inner 78..308).
MP_FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
                400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
                103, 67, 109)  # fmt: skip
MP_RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
MP_LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
MP_RIGHT_BROW = (46, 53, 52, 65, 55, 107, 66, 105, 63, 70)
MP_LEFT_BROW = (276, 283, 282, 295, 285, 336, 296, 334, 293, 300)
MP_UPPER_LIP_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
MP_LOWER_LIP_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
MP_UPPER_LIP_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
MP_LOWER_LIP_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
# Nose: the midline (root 168, tip 4, subnasale 2) and the ring around tip, alae and base.
MP_NOSE_RIDGE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2)
MP_NOSE_BASE = (4, 275, 440, 344, 278, 294, 327, 326, 2, 97, 98, 64, 48, 115, 220, 45)
MP_N_MESH = 468  # face-surface vertices; 468..477 are the irises


def _fixed(pts: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(pts, dtype=np.float64) * (1 << _SHIFT)).astype(np.int32)


def _fill(mask: np.ndarray, pts: np.ndarray, value: int) -> None:
    cv2.fillPoly(mask, [_fixed(pts)], int(value), lineType=cv2.LINE_8, shift=_SHIFT)


def _axes(
    lm: np.ndarray, corners: tuple[int, int] = (36, 45)
) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit eye-line direction (image right), unit up direction, outer-eye-corner distance.

    ``corners``: indices of the subject's right and left outer eye corners (iBUG 36, 45;
    MediaPipe 33, 263).
    """
    right = lm[corners[1]] - lm[corners[0]]
    iod = float(np.linalg.norm(right))
    ex = right / max(iod, 1e-9)
    up = np.array([ex[1], -ex[0]])  # rotate -90 degrees in image coords (y down)
    return ex, up, iod


def face_polygon(lm68: np.ndarray, forehead: float = 0.35) -> np.ndarray:
    """Face outline ``(K, 2)``: the jaw 0..16, then the brows raised towards the forehead.

    Args:
        lm68: ``(68, 2)`` landmarks.
        forehead: how far above the brows the outline goes, as a fraction of the brow-to-chin
            distance (0.35 reaches mid-forehead on typical faces and stays below the hairline).
    """
    lm = np.asarray(lm68, dtype=np.float64)
    _, up, _ = _axes(lm)
    brow_mid = lm[list(IBUG_RIGHT_BROW + IBUG_LEFT_BROW)].mean(0)
    lift = forehead * float(np.linalg.norm(brow_mid - lm[8]))
    top = lm[list(IBUG_LEFT_BROW[::-1] + IBUG_RIGHT_BROW[::-1])]
    # Brows curve downwards at their ends; lift the ends less so the outline stays on the face.
    n = len(top)
    profile = 0.6 + 0.4 * np.sin(np.linspace(0.0, np.pi, n))
    top = top + (lift * profile)[:, None] * up[None, :]
    return np.concatenate([lm[list(IBUG_JAW)], top], axis=0)


def _hull(pts: np.ndarray) -> np.ndarray:
    """Convex hull ``(K, 2)`` of points ``(N, 2)``."""
    return cv2.convexHull(np.asarray(pts, dtype=np.float32))[:, 0].astype(np.float64)


def mesh_face_polygon(mesh: np.ndarray) -> np.ndarray:
    """Face outline ``(K, 2)`` of a MediaPipe mesh: convex hull of its 468 surface vertices.

    The mesh ends at the upper forehead and the jaw line, so hair and neck stay out. The hull is
    the projected mesh's silhouette; the fixed ``MP_FACE_OVAL`` ring is not: on a turned face
    (breakingbad.jpg) it runs across the cheek and leaves the nose outside the face.
    """
    return _hull(np.asarray(mesh, dtype=np.float64)[:MP_N_MESH, :2])


def _parse_from_mesh(mesh: np.ndarray, h: int, w: int) -> np.ndarray:
    """:func:`parse_from_landmarks` for ``(478, 2)`` MediaPipe points -> ``(H, W)`` uint8."""
    ex, _, iod = _axes(mesh, corners=(33, 263))
    mask = np.zeros((h, w), np.uint8)
    _fill(mask, mesh_face_polygon(mesh), Region.SKIN)
    # Nose: ridge widened like the 68-point version (root +-0.06, mid-ridge +-0.10 eye
    # distances) joined with the tip/alae/base ring; convex as seen from the front.
    root, mid = mesh[MP_NOSE_RIDGE[0]], mesh[MP_NOSE_RIDGE[2]]
    a, b = 0.06 * iod, 0.10 * iod
    ridge = np.stack([root - a * ex, root + a * ex, mid - b * ex, mid + b * ex])
    nose = np.concatenate([ridge, mesh[list(MP_NOSE_RIDGE + MP_NOSE_BASE)]])
    _fill(mask, _hull(nose), Region.NOSE)
    _fill(mask, mesh[list(MP_RIGHT_EYE)], Region.RIGHT_EYE)
    _fill(mask, mesh[list(MP_LEFT_EYE)], Region.LEFT_EYE)
    _fill(mask, mesh[list(MP_RIGHT_BROW)], Region.RIGHT_BROW)
    _fill(mask, mesh[list(MP_LEFT_BROW)], Region.LEFT_BROW)
    upper = MP_UPPER_LIP_OUTER + MP_UPPER_LIP_INNER[::-1]
    lower = MP_LOWER_LIP_OUTER + MP_LOWER_LIP_INNER[::-1]
    _fill(mask, mesh[list(upper)], Region.UPPER_LIP)
    _fill(mask, mesh[list(lower)], Region.LOWER_LIP)
    inner = MP_UPPER_LIP_INNER + MP_LOWER_LIP_INNER[-2:0:-1]
    _fill(mask, mesh[list(inner)], Region.INNER_MOUTH)
    return mask


def parse_from_landmarks(
    lm68: np.ndarray,
    size: int | tuple[int, int],
    forehead: float = 0.35,
    brow_thickness: float = 0.08,
) -> np.ndarray:
    """Parse mask from 68 iBUG landmarks or 478 MediaPipe Face Mesh points by polygon fills.

    68 points: face = jaw + brows raised to the forehead (hair and neck excluded); brows are
    thick polylines; eyes, nose (ridge widened + nostrils), upper lip, lower lip and inner mouth
    are polygons.

    478 points (``Face.mp478``; only ``x, y`` are used): face = the mesh's silhouette
    (:func:`mesh_face_polygon`; the mesh itself stops at the upper forehead and the jaw, so
    ``forehead`` is not used); brows, eyes, lips and inner mouth are the Face Mesh contour
    polygons (``MP_*``; brows are filled outlines, so ``brow_thickness`` is not used); nose =
    ridge widened as for 68 points + tip/alae/base ring.

    Later fills win in both: skin, nose, eyes, brows, lips, inner mouth.

    Args:
        lm68: ``(68, 2)`` landmarks, or ``(478, 2)`` / ``(478, 3)`` mesh points, in pixels of
            the target image.
        size: ``S`` or ``(H, W)`` of the mask.
        forehead: see :func:`face_polygon` (68 points only).
        brow_thickness: brow line thickness as a fraction of the outer-eye-corner distance
            (68 points only).

    Returns:
        ``(H, W)`` int64 labels (``Region`` values 0..9).
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    lm = np.asarray(lm68, dtype=np.float64)
    if lm.ndim == 2 and lm.shape[0] == 478 and lm.shape[1] in (2, 3):
        return _parse_from_mesh(lm[:, :2], h, w).astype(np.int64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must be (68, 2) or (478, 2|3), got {lm.shape}")
    ex, _, iod = _axes(lm)
    mask = np.zeros((h, w), np.uint8)
    _fill(mask, face_polygon(lm, forehead), Region.SKIN)

    a, b = 0.06 * iod, 0.10 * iod
    nose = np.stack(
        [
            lm[27] - a * ex,
            lm[29] - b * ex,
            lm[31],
            lm[32],
            lm[33],
            lm[34],
            lm[35],
            lm[29] + b * ex,
            lm[27] + a * ex,
        ]
    )
    _fill(mask, nose, Region.NOSE)
    _fill(mask, lm[list(IBUG_RIGHT_EYE)], Region.RIGHT_EYE)
    _fill(mask, lm[list(IBUG_LEFT_EYE)], Region.LEFT_EYE)

    thick = max(1, round(brow_thickness * iod))
    for idx, region in ((IBUG_RIGHT_BROW, Region.RIGHT_BROW), (IBUG_LEFT_BROW, Region.LEFT_BROW)):
        pts = _fixed(lm[list(idx)])
        cv2.polylines(mask, [pts], False, int(region), thick, cv2.LINE_8, shift=_SHIFT)

    upper = lm[[48, 49, 50, 51, 52, 53, 54, 64, 63, 62, 61, 60]]
    lower = lm[[54, 55, 56, 57, 58, 59, 48, 60, 67, 66, 65, 64]]
    _fill(mask, upper, Region.UPPER_LIP)
    _fill(mask, lower, Region.LOWER_LIP)
    inner = lm[list(IBUG_INNER_LIP)]
    # A closed mouth has a zero-area inner polygon: keep it (it stays lip).
    _fill(mask, inner, Region.INNER_MOUTH)
    return mask.astype(np.int64)


def parse_from_render(
    face_idx: Any,
    bary: Any,
    triangles: Any,
    vertex_labels: Any,
    other_label: int = int(Region.SKIN),
) -> Any:
    """Per-pixel labels of a rendered face model (torch).

    Args:
        face_idx: ``(B, H, W)`` int triangle index per pixel, -1 for background.
        bary: ``(B, H, W, 3)`` barycentric coordinates.
        triangles: ``(F, 3)`` int64 vertex indices.
        vertex_labels: ``(N,)`` int64 ``Region`` per vertex.
        other_label: label used for ``Region.OTHER`` vertices (parse masks have no OTHER).

    Returns:
        ``(B, H, W)`` int64: label of the pixel's triangle corner with the largest
        barycentric weight; ``BACKGROUND`` where ``face_idx`` is -1.
    """
    import torch

    fi = torch.as_tensor(face_idx)
    tri = torch.as_tensor(triangles, device=fi.device).long()
    vl = torch.as_tensor(vertex_labels, device=fi.device).long()
    vl = torch.where(vl == int(Region.OTHER), torch.full_like(vl, other_label), vl)
    corner = torch.as_tensor(bary, device=fi.device).argmax(dim=-1)  # (B, H, W)
    fg = fi >= 0
    safe = fi.clamp(min=0).long()
    vert = tri[safe, corner]  # (B, H, W)
    labels = vl[vert]
    return torch.where(fg, labels, torch.full_like(labels, int(Region.BACKGROUND)))


def one_hot(labels: Any, n: int = NUM_PARSE_CLASSES) -> Any:
    """One-hot encode labels, channels first.

    Args:
        labels: ``(..., H, W)`` integer labels (numpy or torch).
        n: number of classes.

    Returns:
        ``(..., n, H, W)`` float (torch: default float dtype; numpy: float32).
    """
    if hasattr(labels, "long"):
        import torch

        oh = torch.nn.functional.one_hot(labels.long(), n)  # (..., H, W, n)
        return oh.movedim(-1, -3).to(torch.get_default_dtype())
    lab = np.asarray(labels).astype(np.int64)
    oh = (lab[..., None] == np.arange(n)).astype(np.float32)
    return np.moveaxis(oh, -1, -3)


def dfmvr_weight_map(
    labels: np.ndarray,
    dilation: int = 20,
    ref_size: int = 224,
    normalise: bool = False,
    values: tuple[float, float, float] = (32.0, 128.0, 254.0),
) -> np.ndarray:
    """DF-MVR photometric weight map (paper values: 32 / 128 / 254 of 255, 20 px dilation).

    Facial features (``FEATURE_REGIONS``: brows, eyes, nose, lips, inner mouth) are dilated by a
    square kernel of side ``dilation * H / ref_size`` px and get 254; the rest of the face
    (any non-background label) 128; background 32. The released code instead uses
    0.25 / 0.5 / 0.99 with a 10 x 10 kernel.

    Args:
        labels: ``(H, W)`` or ``(B, H, W)`` integer ``Region`` labels.
        dilation: kernel side at ``ref_size`` (scaled with the mask height).
        normalise: divide by 255.
        values: (background, face, features).

    Returns:
        ``(H, W)`` / ``(B, H, W)`` float32 weights.
    """
    lab = np.asarray(labels)
    if lab.ndim == 3:
        return np.stack([dfmvr_weight_map(x, dilation, ref_size, normalise, values) for x in lab])
    h = lab.shape[0]
    k = max(1, round(dilation * h / ref_size))
    feat = np.isin(lab, [int(r) for r in FEATURE_REGIONS]).astype(np.uint8)
    if k > 1:
        feat = cv2.dilate(feat, np.ones((k, k), np.uint8))
    out = np.full(lab.shape, values[0], np.float32)
    out[lab != int(Region.BACKGROUND)] = values[1]
    out[feat > 0] = values[2]
    return out / 255.0 if normalise else out

"""Per-vertex semantic regions of a face mesh, derived from its 68 landmark vertices.

Everything works in the frontal projection (x, y) of the mean shape, in mm, with sizes relative to
the outer-eye-corner distance ``iod`` (landmarks 36 and 45), so it applies to any face model:

* eyes: the eye polygon (36..41, 42..47) enlarged 1.3x about its centre;
* brows: a band around the brow polyline (17..21, 22..26), 0.08 iod above and 0.06 iod below;
* nose: bridge from 27 (0.1 iod half-width) to the alae (0.07 iod beyond 31 / 35) and the
  nostril base 31..35 lowered by 0.02 iod;
* lips: the outer lip polygon 48..59, split into upper / lower by the mouth line through
  60, mid(61, 67), mid(62, 66), mid(63, 65), 64;
* OTHER: vertices within ``border_mm`` of the mesh border; everything else SKIN.

``skin_mask`` = SKIN minus a ``margin`` band around every feature (cheeks, forehead, chin).
``front_mask`` = inside the jaw line 0..16 closed over the forehead 0.35 iod above the brows,
minus the border band (the photometric-loss region).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facerecon.labels import Region
from facerecon.morphable.mesh import outer_boundary_vertices


@dataclass(frozen=True)
class RegionConfig:
    border_mm: float = 6.0
    skin_margin_mm: float = 5.0
    eye_scale: float = 1.3
    forehead_above_brows: float = 0.35  # x iod


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd test of ``points (N, 2)`` against a closed ``polygon (P, 2)``: ``(N,)`` bool."""
    x, y = points[:, 0:1], points[:, 1:2]
    a = polygon[None, :, :]
    b = np.roll(polygon, -1, axis=0)[None, :, :]
    crosses = (a[..., 1] > y) != (b[..., 1] > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (y - a[..., 1]) / (b[..., 1] - a[..., 1])
    xi = a[..., 0] + t * (b[..., 0] - a[..., 0])
    hit = crosses & (x < xi)
    return (hit.sum(axis=1) % 2) == 1


def mouth_line(lm: np.ndarray) -> np.ndarray:
    """``(5, 2)`` points of the line between the lips from 2D landmarks ``lm (68, 2)``."""
    return np.stack(
        [
            lm[60],
            0.5 * (lm[61] + lm[67]),
            0.5 * (lm[62] + lm[66]),
            0.5 * (lm[63] + lm[65]),
            lm[64],
        ]
    )


def below_mouth_line(xy: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: points below the mouth line (line extended flat beyond the corners)."""
    line = mouth_line(lm)
    order = np.argsort(line[:, 0])
    y_line = np.interp(xy[:, 0], line[order, 0], line[order, 1])
    return xy[:, 1] < y_line


def _scaled(poly: np.ndarray, s: float) -> np.ndarray:
    c = poly.mean(axis=0)
    return c + s * (poly - c)


def _brow_polygon(brow: np.ndarray, up: float, down: float) -> np.ndarray:
    top = brow + np.array([0.0, up])
    bottom = brow - np.array([0.0, down])
    return np.concatenate([top, bottom[::-1]])


def vertex_regions(
    vertices: np.ndarray,
    triangles: np.ndarray,
    landmarks68: np.ndarray,
    config: RegionConfig | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels ``(N,)`` int64 (:class:`Region`), ``skin_mask (N,)`` and ``front_mask (N,)`` bool.

    ``vertices (N, 3)`` mm of the mean face (+x subject's left, +y up, +z out of the face).
    """
    from scipy.spatial import cKDTree

    cfg = config or RegionConfig()
    xy = vertices[:, :2]
    lm = vertices[landmarks68, :2]
    iod = float(np.linalg.norm(lm[45] - lm[36]))
    labels = np.full(len(vertices), int(Region.SKIN), dtype=np.int64)

    nose = np.stack(
        [
            lm[27] + [-0.10 * iod, 0.0],
            [lm[31, 0] - 0.07 * iod, lm[29, 1]],
            [lm[31, 0] - 0.07 * iod, lm[33, 1]],
            *(lm[31:36] - [0.0, 0.02 * iod]),
            [lm[35, 0] + 0.07 * iod, lm[33, 1]],
            [lm[35, 0] + 0.07 * iod, lm[29, 1]],
            lm[27] + [0.10 * iod, 0.0],
        ]
    )
    lips = points_in_polygon(xy, lm[48:60])
    lower = below_mouth_line(xy, lm)
    regions = [
        (Region.NOSE, points_in_polygon(xy, nose)),
        (
            Region.RIGHT_BROW,
            points_in_polygon(xy, _brow_polygon(lm[17:22], 0.08 * iod, 0.06 * iod)),
        ),
        (Region.LEFT_BROW, points_in_polygon(xy, _brow_polygon(lm[22:27], 0.08 * iod, 0.06 * iod))),
        (Region.RIGHT_EYE, points_in_polygon(xy, _scaled(lm[36:42], cfg.eye_scale))),
        (Region.LEFT_EYE, points_in_polygon(xy, _scaled(lm[42:48], cfg.eye_scale))),
        (Region.UPPER_LIP, lips & ~lower),
        (Region.LOWER_LIP, lips & lower),
    ]
    for region, mask in regions:
        labels[mask] = int(region)

    border = outer_boundary_vertices(triangles, len(vertices))
    near_border = np.zeros(len(vertices), dtype=bool)
    if border.any():
        dist, _ = cKDTree(vertices[border]).query(vertices)
        near_border = dist < cfg.border_mm
    labels[near_border] = int(Region.OTHER)

    feature = (labels != int(Region.SKIN)) & (labels != int(Region.OTHER))
    skin = labels == int(Region.SKIN)
    if feature.any():
        dist, _ = cKDTree(vertices[feature]).query(vertices)
        skin &= dist > cfg.skin_margin_mm

    lift = cfg.forehead_above_brows * iod
    forehead = lm[26:16:-1] + np.array([0.0, lift])
    outline = np.concatenate([lm[0:17], forehead])
    front = points_in_polygon(xy, outline) & ~near_border
    return labels, skin, front

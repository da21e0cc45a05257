"""Rigid ICP with isotropic scale, and the closed-form Umeyama similarity.

Convention (row vectors, as in ``docs/DESIGN.md``): a :class:`Similarity` maps
``p -> scale * p @ R.T + t``. ICP moves the *source* (the prediction) onto the *target*
(the ground truth, usually cropped). Correspondences run target -> source: every target
point is paired with its closest point on the source surface (or nearest source vertex),
which is the direction the error metric uses and lets a full predicted face be aligned to
a cropped scan without the prediction's extra surface pulling it away.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from facerecon.evaluate.geometry import SurfaceQuery
from facerecon.geometry import Similarity, umeyama

__all__ = ["ICPConfig", "ICPResult", "Similarity", "icp", "initial_similarity", "umeyama"]


@dataclass
class ICPConfig:
    """ICP settings. Distances in the target's units (mm).

    max_iterations: iteration cap. tolerance: stop when the trimmed RMSE changes by less
    than ``tolerance`` (relative) between iterations. trim_fraction: keep this fraction of
    the correspondences with the smallest distances each iteration (trimmed ICP, robust to
    partial overlap). reject_mm: also drop correspondences farther than this (None: off).
    with_scale: estimate isotropic scale (the paper's protocol) or keep scale 1.
    point_to_plane: linearised point-to-plane updates (target point to the source's
    tangent plane) instead of closed-form point-to-point (Umeyama) updates.
    correspondence: "surface" (closest point on the source triangles) or "vertex"
    (nearest source vertex; faster, coarser). min_rmse: stop (converged) once the trimmed
    RMSE is below this (exact fit).
    """

    max_iterations: int = 50
    tolerance: float = 1e-6
    trim_fraction: float = 0.9
    reject_mm: float | None = None
    with_scale: bool = True
    point_to_plane: bool = False
    correspondence: str = "surface"
    min_rmse: float = 1e-9


@dataclass
class ICPResult:
    """similarity: source -> target; rmse: trimmed RMSE of the last iteration (target units);
    iterations run; converged flag; history of trimmed RMSE per iteration."""

    similarity: Similarity
    rmse: float
    iterations: int
    converged: bool
    history: list[float] = field(default_factory=list)


def initial_similarity(
    source_points: np.ndarray,
    target_points: np.ndarray,
    source_landmarks: np.ndarray | None = None,
    target_landmarks: np.ndarray | None = None,
    with_scale: bool = True,
) -> Similarity:
    """Starting pose for ICP.

    With landmarks on both sides (``(K, 3)`` corresponding positions, K >= 3, e.g. 68 or 5):
    Umeyama on them. Otherwise: scale 1 (both meshes in mm) and a translation matching the
    centroids of ``source_points (N, 3)`` and ``target_points (M, 3)``.
    """
    if source_landmarks is not None and target_landmarks is not None:
        return umeyama(source_landmarks, target_landmarks, with_scale=with_scale)
    t = np.mean(target_points, axis=0) - np.mean(source_points, axis=0)
    return Similarity(1.0, np.eye(3), t)


def _rotation_from_vector(w: np.ndarray) -> np.ndarray:
    """Rodrigues: rotation by angle |w| about w/|w|."""
    theta = float(np.linalg.norm(w))
    if theta < 1e-15:
        return np.eye(3)
    k = w / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def _plane_step(p: np.ndarray, q: np.ndarray, n: np.ndarray, with_scale: bool) -> Similarity:
    """Incremental similarity minimising ``sum (n_i . (T(p_i) - q_i))^2``, linearised.

    p: current source points (K, 3); q: target points (K, 3); n: unit normals at p (K, 3).
    Centred on q's mean for conditioning; T(p) ~ p + s' (p - c) + w x (p - c) + tau.
    """
    c = q.mean(axis=0)
    pc = p - c
    cols = [np.cross(pc, n), n]
    if with_scale:
        cols.insert(0, np.sum(n * pc, axis=1, keepdims=True))
    a = np.hstack(cols)
    b = -np.sum(n * (p - q), axis=1)
    x, *_ = np.linalg.lstsq(a, b, rcond=None)
    sc = 1.0 + (x[0] if with_scale else 0.0)
    w, tau = x[-6:-3], x[-3:]
    rot = _rotation_from_vector(w)
    # p -> sc * R (p - c) + c + tau
    return Similarity(float(sc), rot, c + tau - sc * c @ rot.T)


def icp(
    source_vertices: np.ndarray,
    target_points: np.ndarray,
    source_triangles: np.ndarray | None = None,
    init: Similarity | None = None,
    config: ICPConfig | None = None,
) -> ICPResult:
    """Align ``source_vertices (N, 3)`` (with ``source_triangles (F, 3)`` if it is a mesh) to
    ``target_points (M, 3)``; returns the source -> target similarity.

    Each iteration pairs every target point with its closest source point (surface or
    vertex, found in the source's own frame via the inverse transform, so the KD-trees are
    built once), trims/rejects the farthest pairs, then solves for a new similarity:
    closed-form Umeyama on the pairs (point-to-point) or a linearised point-to-plane step.
    """
    cfg = config or ICPConfig()
    src = np.asarray(source_vertices, dtype=np.float64)
    tgt = np.asarray(target_points, dtype=np.float64)
    if cfg.correspondence not in ("surface", "vertex"):
        raise ValueError(f"unknown correspondence {cfg.correspondence!r}")
    if not 0.0 < cfg.trim_fraction <= 1.0:
        raise ValueError("trim_fraction must be in (0, 1]")
    query = None
    if source_triangles is not None:
        query = SurfaceQuery(src, source_triangles)
    elif cfg.point_to_plane:
        raise ValueError("point-to-plane ICP needs source_triangles")
    tree = cKDTree(src) if query is None else None

    sim = init or initial_similarity(src, tgt)
    history: list[float] = []
    converged = False
    it = 0
    while it < cfg.max_iterations:
        it += 1
        local = sim.inverse().apply(tgt)  # target points in the source frame
        if query is not None and cfg.correspondence == "surface":
            hit = query.closest(local)
            corr, d = hit.point, hit.distance
            normals = query.normals_at(hit) if cfg.point_to_plane else None
        else:
            if query is not None:
                d, idx = query.nearest_vertex(local)
                normals = query.normals[idx] if cfg.point_to_plane else None
            else:
                d, idx = tree.query(local)
                normals = None
            corr = src[idx]
        d = d * sim.scale  # distances in target units
        keep = np.ones(len(d), bool)
        if cfg.trim_fraction < 1.0:
            n_keep = max(3, int(np.ceil(cfg.trim_fraction * len(d))))
            keep[np.argsort(d)[n_keep:]] = False
        if cfg.reject_mm is not None:
            keep &= d <= cfg.reject_mm
        if keep.sum() < 3:
            break
        rmse = float(np.sqrt(np.mean(d[keep] ** 2)))
        history.append(rmse)
        small_change = len(history) > 1 and abs(history[-2] - rmse) <= cfg.tolerance * history[-2]
        if rmse <= cfg.min_rmse or small_change:
            converged = True
            break
        if cfg.point_to_plane:
            p = sim.apply(corr[keep])
            n = normals[keep] @ sim.R.T
            step = _plane_step(p, tgt[keep], n, cfg.with_scale)
            sim = step.compose(sim)
        else:
            sim = umeyama(corr[keep], tgt[keep], with_scale=cfg.with_scale)
    return ICPResult(sim, history[-1] if history else float("nan"), it, converged, history)

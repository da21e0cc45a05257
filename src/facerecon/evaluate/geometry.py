"""Triangle-mesh geometry for evaluation: exact closest points on a surface.

All functions are pure numpy on single (unbatched) meshes: ``vertices (N, 3)`` float,
``triangles (F, 3)`` int. Distances are in the units of the inputs (millimetres here). Normals
come from :mod:`facerecon.geometry` (the one numpy normals rule).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from facerecon.geometry import face_normals, vertex_normals

_EPS = 1e-12


def _closest_on_segments(
    p: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Closest points on segments ``a..b`` to ``p`` (all ``(..., 3)``); returns (point, t)."""
    ab = b - a
    denom = np.einsum("...i,...i->...", ab, ab)
    t = np.einsum("...i,...i->...", p - a, ab) / np.maximum(denom, _EPS)
    t = np.clip(t, 0.0, 1.0)
    return a + t[..., None] * ab, t


def closest_points_on_triangles(
    points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact closest point on each triangle ``(a, b, c)`` to each point, fully vectorised.

    points, a, b, c: broadcastable ``(..., 3)``. Returns ``closest (..., 3)`` and barycentric
    coordinates ``bary (..., 3)`` (weights of a, b, c). Method: project onto the triangle's
    plane; if the projection's barycentrics are all >= 0 it is the answer, otherwise the
    closest point lies on the boundary and is the nearest of the three clamped edge points.
    Degenerate (zero-area) triangles use the edge points only.
    """
    points, a, b, c = np.broadcast_arrays(points, a, b, c)
    ab, ac, ap = b - a, c - a, points - a
    d00 = np.einsum("...i,...i->...", ab, ab)
    d01 = np.einsum("...i,...i->...", ab, ac)
    d11 = np.einsum("...i,...i->...", ac, ac)
    d20 = np.einsum("...i,...i->...", ap, ab)
    d21 = np.einsum("...i,...i->...", ap, ac)
    den = d00 * d11 - d01 * d01
    ok = den > _EPS * np.maximum(d00 * d11, _EPS)
    safe = np.where(ok, den, 1.0)
    v = (d11 * d20 - d01 * d21) / safe
    w = (d00 * d21 - d01 * d20) / safe
    u = 1.0 - v - w
    inside = ok & (u >= 0) & (v >= 0) & (w >= 0)

    e_ab, t_ab = _closest_on_segments(points, a, b)
    e_bc, t_bc = _closest_on_segments(points, b, c)
    e_ca, t_ca = _closest_on_segments(points, c, a)
    edges = np.stack([e_ab, e_bc, e_ca], axis=-2)  # (..., 3 edges, 3)
    d2 = np.sum((edges - points[..., None, :]) ** 2, axis=-1)
    best = np.argmin(d2, axis=-1)
    edge_pt = np.take_along_axis(edges, best[..., None, None], axis=-2)[..., 0, :]
    zero = np.zeros_like(t_ab)
    edge_bary = np.stack(
        [
            np.stack([1 - t_ab, t_ab, zero], axis=-1),
            np.stack([zero, 1 - t_bc, t_bc], axis=-1),
            np.stack([t_ca, zero, 1 - t_ca], axis=-1),
        ],
        axis=-2,
    )
    edge_bary = np.take_along_axis(edge_bary, best[..., None, None], axis=-2)[..., 0, :]

    face_pt = a + v[..., None] * ab + w[..., None] * ac
    closest = np.where(inside[..., None], face_pt, edge_pt)
    bary = np.where(inside[..., None], np.stack([u, v, w], axis=-1), edge_bary)
    return closest, bary


@dataclass
class SurfaceHit:
    """Closest points on a mesh for ``M`` query points.

    point (M, 3); triangle (M,) int64 index of the triangle holding it; bary (M, 3) its
    barycentric weights on that triangle's vertices; distance (M,) Euclidean distance.
    """

    point: np.ndarray
    triangle: np.ndarray
    bary: np.ndarray
    distance: np.ndarray


class SurfaceQuery:
    """Exact closest-point queries on a triangle mesh ``vertices (N, 3)``, ``triangles (F, 3)``.

    Candidate search (exact, not approximate): the distance ``ub`` to the nearest vertex
    (KD-tree) bounds the surface distance from above. The triangle holding the closest
    point then has its centroid within ``ub + r_max`` of the query (``r_max`` = largest
    centroid-to-corner distance of any triangle), so a ball query on a KD-tree of centroids
    finds it; candidates with ``|q - centroid| - r_T > ub`` (``r_T`` that triangle's own
    radius) cannot win and are dropped before the exact point-triangle computation.
    Triangles are bucketed by radius (median, 90th percentile, max), one centroid tree each,
    so the ball for small triangles uses the bucket's radius instead of ``r_max``.
    """

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray) -> None:
        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.triangles = np.asarray(triangles, dtype=np.int64)
        if len(self.triangles) == 0:
            raise ValueError("mesh has no triangles")
        used = np.unique(self.triangles)
        self._used = used
        self.vertex_tree = cKDTree(self.vertices[used])
        corners = self.vertices[self.triangles]
        self.centroids = corners.mean(axis=1)
        self.radius = np.linalg.norm(corners - self.centroids[:, None], axis=2).max(axis=1)
        self.r_max = float(self.radius.max())
        # Triangles bucketed by radius (median / 90th percentile / max), one centroid tree per
        # bucket, so small triangles are searched with a small ball.
        edges = np.unique(np.r_[np.percentile(self.radius, [50, 90]), self.r_max])
        bucket = np.searchsorted(edges, self.radius)
        self._buckets = []
        for b, r_b in enumerate(edges):
            members = np.flatnonzero(bucket == b)
            if len(members):
                self._buckets.append((float(r_b), members, cKDTree(self.centroids[members])))
        self._normals: np.ndarray | None = None

    @property
    def normals(self) -> np.ndarray:
        """Area-weighted unit vertex normals ``(N, 3)`` (computed once)."""
        if self._normals is None:
            self._normals = vertex_normals(self.vertices, self.triangles)
        return self._normals

    def nearest_vertex(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest mesh vertex (among vertices used by a triangle) to ``points (M, 3)``:
        returns ``distance (M,)`` and ``index (M,)`` into ``vertices``."""
        d, i = self.vertex_tree.query(np.asarray(points, dtype=np.float64))
        return d, self._used[i]

    def closest(self, points: np.ndarray) -> SurfaceHit:
        """Closest surface points to ``points (M, 3)``."""
        points = np.asarray(points, dtype=np.float64)
        ub, _ = self.nearest_vertex(points)
        ub = ub * (1.0 + 1e-9) + 1e-9
        tri_parts, qid_parts = [], []
        for r_b, members, tree in self._buckets:
            lists = tree.query_ball_point(points, ub + r_b)
            lens = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(points))
            flat = np.fromiter(itertools.chain.from_iterable(lists), np.int64, count=lens.sum())
            tri_parts.append(members[flat])
            qid_parts.append(np.repeat(np.arange(len(points)), lens))
        tri, qid = np.concatenate(tri_parts), np.concatenate(qid_parts)
        dc = np.linalg.norm(self.centroids[tri] - points[qid], axis=1)
        keep = dc - self.radius[tri] <= ub[qid]
        tri, qid = tri[keep], qid[keep]
        corners = self.vertices[self.triangles[tri]]
        cp, bary = closest_points_on_triangles(
            points[qid], corners[:, 0], corners[:, 1], corners[:, 2]
        )
        d = np.linalg.norm(cp - points[qid], axis=1)
        order = np.lexsort((d, qid))
        first = order[np.r_[True, qid[order][1:] != qid[order][:-1]]]
        if len(first) != len(points):  # cannot happen: the nearest vertex's triangles qualify
            raise RuntimeError("closest-point search lost a query")
        return SurfaceHit(cp[first], tri[first], bary[first], d[first])

    def normals_at(self, hit: SurfaceHit) -> np.ndarray:
        """Unit tangent-plane normals ``(M, 3)`` at closest points: barycentric interpolation
        of the vertex normals, falling back to the face normal where that vanishes."""
        vn = self.normals[self.triangles[hit.triangle]]  # (M, 3, 3)
        n = np.einsum("mk,mki->mi", hit.bary, vn)
        norm = np.linalg.norm(n, axis=1, keepdims=True)
        fn = face_normals(self.vertices, self.triangles[hit.triangle])
        fnorm = np.linalg.norm(fn, axis=1, keepdims=True)
        fn = fn / np.maximum(fnorm, _EPS)
        return np.where(norm > 1e-6, n / np.maximum(norm, _EPS), fn)

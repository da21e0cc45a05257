"""A coarser mesh over a subset of a face model's own vertices, for cheap low-resolution renders.

A fit's photometric steps at 112 px render bfm-lite's 15,204 vertices and 29,907 triangles into
about 9,000 face pixels: more vertices than pixels, and the per-vertex work (shape and albedo
from the bases, normals, lighting, triangle set-up) is most of a step's time. The renders such
a step compares with the photo change little when every third or fourth vertex is dropped.

:func:`decimate` removes vertices by half-edge collapses (a vertex merges into one of its
neighbours, which stays where it is), so the kept vertices are rows of the original bases and
the coarse model is exact at them: :func:`coarse_model` is the same linear model on fewer rows.
Each round collapses an independent set of vertices (no two share a triangle, so each
triangle changes at most once and the checks below are exact), cheapest first by the quadric
error (Garland & Heckbert 1997) of the mean shape plus a small edge-length term that keeps the
density even. A collapse is refused when it would flip a triangle (normal turned more than
60 degrees), break the link condition (non-manifold result) or move a fixed vertex: the mesh
border, the border of the photometric (front) region and the 68 landmark vertices stay.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from facerecon.cache import cache_dir
from facerecon.fileio import atomic_savez
from facerecon.memo import TensorMemo
from facerecon.morphable.model import ARRAY_KEYS, MorphableModel

__all__ = ["coarse_model", "decimate"]

#: a collapse may turn a triangle's normal by at most this (cosine of 60 degrees)
_MIN_NORMAL_COS = 0.5
#: weight of the squared edge length (mm^2) next to the quadric error (mm^2)
_LENGTH_WEIGHT = 0.01

_MEMO = TensorMemo(size=4)
#: bump when :func:`decimate` changes what it returns (the disk cache's key)
_VERSION = 1


def _face_normals(v: np.ndarray, tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]])
    area2 = np.linalg.norm(n, axis=1)
    return n / np.maximum(area2, 1e-12)[:, None], area2


def _quadrics(v: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """``(N, 4, 4)`` area-weighted sums of the incident triangles' plane quadrics."""
    n, area2 = _face_normals(v, tri)
    p = np.concatenate([n, -(n * v[tri[:, 0]]).sum(1, keepdims=True)], axis=1)
    q = (area2 / 2)[:, None, None] * p[:, :, None] * p[:, None, :]
    out = np.zeros((v.shape[0], 4, 4))
    for k in range(3):
        np.add.at(out, tri[:, k], q)
    return out


def _edges(tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(undirected edges (E, 2) sorted per row, how many triangles hold each (E,))``."""
    e = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    e.sort(axis=1)
    return np.unique(e, axis=0, return_counts=True)


def _neighbours(edges: np.ndarray, n: int) -> list[set[int]]:
    out: list[set[int]] = [set() for _ in range(n)]
    for a, b in edges.tolist():
        out[a].add(b)
        out[b].add(a)
    return out


def _collapsed(tri: np.ndarray, target_of: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``tri (F, 3)`` after moving each vertex ``u`` with ``target_of[u] >= 0`` onto it:
    ``(hit (F, 3) the corners moved, new (F, 3), degenerate (F,) rows left with a repeated
    vertex)``."""
    hit = target_of[tri] >= 0
    new = tri.copy()
    new[hit] = target_of[tri[hit]]
    degenerate = (new[:, 0] == new[:, 1]) | (new[:, 1] == new[:, 2]) | (new[:, 0] == new[:, 2])
    return hit, new, degenerate


def decimate(
    vertices: np.ndarray,
    triangles: np.ndarray,
    target: int,
    fixed: np.ndarray | None = None,
    max_rounds: int = 40,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half-edge-collapse decimation of a triangle mesh onto a subset of its vertices.

    Args:
        vertices: ``(N, 3)`` float positions (e.g. a model's mean shape, mm).
        triangles: ``(F, 3)`` int, counter-clockwise seen from outside.
        target: vertices to keep (at most; the fixed vertices and refused collapses may leave
            more).
        fixed: ``(N,)`` bool, vertices never removed (the mesh border always is).
        max_rounds: cap on collapse rounds.

    Returns:
        ``(keep (M,) int64 ascending indices into vertices, triangles (F', 3) int64 indices
        into keep, rows (F',) int64: the row of ``triangles`` each coarse triangle descends
        from)``. Winding is preserved.
    """
    v = np.asarray(vertices, dtype=np.float64)
    tri = np.asarray(triangles, dtype=np.int64).copy()
    n = v.shape[0]
    rows = np.arange(tri.shape[0])
    edges, count = _edges(tri)
    frozen = np.zeros(n, dtype=bool) if fixed is None else np.asarray(fixed, dtype=bool).copy()
    frozen[edges[count != 2].ravel()] = True  # border and non-manifold edges
    alive = np.zeros(n, dtype=bool)
    alive[np.unique(tri)] = True
    quad = _quadrics(v, tri)
    vh = np.concatenate([v, np.ones((n, 1))], axis=1)
    for _ in range(max_rounds):
        excess = int(alive.sum()) - target
        if excess <= 0:
            break
        edges, _ = _edges(tri)
        # directed collapses u -> w, u movable
        d = np.concatenate([edges, edges[:, ::-1]])
        d = d[~frozen[d[:, 0]]]
        if d.size == 0:
            break
        u, w = d[:, 0], d[:, 1]
        cost = np.einsum("ei,eij,ej->e", vh[w], quad[u], vh[w])
        cost = cost + _LENGTH_WEIGHT * ((v[u] - v[w]) ** 2).sum(1)
        order = np.lexsort((cost, u))  # by u, cheapest target first
        u, w, cost = u[order], w[order], cost[order]
        first = np.ones(len(u), dtype=bool)
        first[1:] = u[1:] != u[:-1]
        u, w, cost = u[first], w[first], cost[first]
        nbr = _neighbours(edges, n)
        taken = np.zeros(n, dtype=bool)
        chosen_u, chosen_w = [], []
        for i in np.argsort(cost, kind="stable").tolist():
            a, b = int(u[i]), int(w[i])
            if taken[a] or any(taken[x] for x in nbr[a]):
                continue
            if len(nbr[a] & nbr[b]) != 2:  # link condition of an interior edge
                continue
            chosen_u.append(a)
            chosen_w.append(b)
            taken[a] = True
            for x in nbr[a]:
                taken[x] = True
            if len(chosen_u) >= excess:
                break
        if not chosen_u:
            break
        target_of = np.full(n, -1)
        target_of[chosen_u] = chosen_w
        # each triangle holds at most one chosen vertex (they are pairwise non-adjacent)
        hit, new, degenerate = _collapsed(tri, target_of)
        moved = hit.any(1) & ~degenerate
        n_old, _ = _face_normals(v, tri[moved])
        n_new, area2 = _face_normals(v, new[moved])
        bad = ((n_old * n_new).sum(1) < _MIN_NORMAL_COS) | (area2 < 1e-10)
        refused = np.unique(tri[moved][bad][hit[moved][bad]])
        if refused.size:
            target_of[refused] = -1
            hit, new, degenerate = _collapsed(tri, target_of)
        done = np.flatnonzero(target_of >= 0)
        if done.size == 0:
            break
        np.add.at(quad, target_of[done], quad[done])
        alive[done] = False
        tri, rows = new[~degenerate], rows[~degenerate]
    keep = np.flatnonzero(alive)
    remap = np.full(n, -1)
    remap[keep] = np.arange(keep.size)
    return keep.astype(np.int64), remap[tri].astype(np.int64), rows.astype(np.int64)


def _cached_decimation(
    mean: np.ndarray, tri: np.ndarray, target: int, fixed: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`decimate`, kept in the cache folder under a hash of its inputs (it takes about
    2 s for bfm-lite; a read is a few ms). An unreadable or unwritable cache only costs time."""
    h = hashlib.sha1()
    for a in (mean.astype(np.float64), tri.astype(np.int64), fixed.astype(bool)):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(f"{target}/{_VERSION}".encode())
    path = cache_dir() / "coarse" / f"{h.hexdigest()[:20]}.npz"
    try:
        with np.load(path) as z:
            return z["keep"], z["triangles"], z["rows"]
    except (OSError, KeyError, ValueError):
        pass
    keep, coarse_tri, rows = decimate(mean, tri, target, fixed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_savez(path, {"keep": keep, "triangles": coarse_tri, "rows": rows})
    except OSError:
        pass
    return keep, coarse_tri, rows


def _make_coarse(model: MorphableModel, target: int) -> MorphableModel:
    tri = model.triangles.cpu().numpy()
    front = model.front_face_mask.cpu().numpy()
    fixed = np.zeros(model.n_vertices, dtype=bool)
    fixed[model.landmarks68.cpu().numpy()] = True
    # vertices on both front and other triangles: the photometric region's border
    in_front = np.zeros(model.n_vertices, dtype=bool)
    in_other = np.zeros(model.n_vertices, dtype=bool)
    in_front[tri[front].ravel()] = True
    in_other[tri[~front].ravel()] = True
    fixed |= in_front & in_other
    mean = model.mean_shape.detach().cpu().double().numpy()
    keep, coarse_tri, rows = _cached_decimation(mean, tri, target, fixed)
    keep_t = torch.as_tensor(keep, device=model.device)
    remap = torch.full((model.n_vertices,), -1, dtype=torch.int64, device=model.device)
    remap[keep_t] = torch.arange(keep.size, device=model.device)
    coarse_tri_t = torch.as_tensor(coarse_tri, device=model.device)
    front_rows = torch.as_tensor(front[rows], device=model.device)
    return MorphableModel(
        f"{model.name}-coarse{keep.size}",
        model.mean_shape[keep_t],
        model.id_basis[keep_t],
        model.exp_basis[keep_t],
        model.tex_mean[keep_t],
        model.tex_basis[keep_t],
        coarse_tri_t,
        remap[model.landmarks68],
        model.vertex_labels[keep_t],
        model.skin_mask[keep_t],
        model.front_mask[keep_t],
        front_triangles=coarse_tri_t[front_rows],
        meta={**model.meta, "coarse_of": model.name, "kept_vertices": keep.tolist()},
        dtype=model.dtype,
    ).to(model.device)


def coarse_model(model: MorphableModel, fraction: float) -> MorphableModel:
    """``model`` on about ``fraction`` of its vertices (:func:`decimate` of its mean shape;
    fixed: the mesh border, the front region's border, the landmark vertices): the same
    coefficients give the same shape and albedo at every kept vertex. ``meta["kept_vertices"]``
    lists them. Made once per model and kept while its buffers are unchanged; ``fraction >= 1``
    returns ``model`` itself."""
    if fraction >= 1:
        return model
    target = max(round(model.n_vertices * fraction), 100)
    return _MEMO.get(
        # every buffer the coarse model is made from
        tuple(getattr(model, k) for k in ARRAY_KEYS),
        lambda: _make_coarse(model, target),
        target,
    )

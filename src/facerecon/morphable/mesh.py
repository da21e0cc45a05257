"""Mesh utilities for building face models: sampling, triangulation, cleaning, checks.

Build-time helpers on numpy arrays (vertices ``(N, 3)``, triangles ``(F, 3)`` int64).
Triangles are counter-clockwise seen from +z, so right-hand normals point out of the face.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse

# scipy loads in the functions that use it: importing a face model (this module, through
# facerecon.morphable) stays free of it (~0.3 s of the CLI's start-up)


def poisson_subsample(
    points: np.ndarray, radius: float, keep: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """Greedy Poisson-disk subset of ``points (N, 3)``: no two kept points closer than ``radius``.

    ``keep`` indices are always kept (and accepted first). Returns sorted indices ``(M,)``.
    """
    from scipy.spatial import cKDTree

    n = len(points)
    tree = cKDTree(points)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    if keep is not None and len(keep):
        keep = np.unique(np.asarray(keep, dtype=np.int64))
        order = np.concatenate([keep, order[~np.isin(order, keep)]])
    blocked = np.zeros(n, dtype=bool)
    chosen = np.zeros(n, dtype=bool)
    forced = set(keep.tolist()) if keep is not None else set()
    neighbours = tree.query_ball_point(points[order], r=radius)
    for i, nb in zip(order, neighbours, strict=True):
        if blocked[i] and i not in forced:
            continue
        chosen[i] = True
        blocked[nb] = True
    return np.flatnonzero(chosen)


def occluded(points: np.ndarray, cell: float, depth: float) -> np.ndarray:
    """``(N,)`` bool: points ``(u, v, d)`` with another point more than ``depth`` further out
    (larger d) within about one ``cell`` in (u, v) (max-buffer on a grid)."""
    ij = np.floor(points[:, :2] / cell).astype(np.int64)
    ij -= ij.min(axis=0)
    h, w = ij.max(axis=0) + 3
    zbuf = np.full((h, w), -np.inf)
    np.maximum.at(zbuf, (ij[:, 0] + 1, ij[:, 1] + 1), points[:, 2])
    best = np.full(len(points), -np.inf)
    for di in (0, 1, 2):
        for dj in (0, 1, 2):
            best = np.maximum(best, zbuf[ij[:, 0] + di, ij[:, 1] + dj])
    return best > points[:, 2] + depth


def occluded_from_center(points: np.ndarray, center: np.ndarray, depth: float = 15.0) -> np.ndarray:
    """``(N,)`` bool: points hidden behind other surface (further from ``center``) along the rays
    from ``center``, e.g. the neck behind the jaw. Cell ~ 0.008 rad."""
    uv = central_projection(points, center)
    dist = np.linalg.norm(points - center, axis=1)
    return occluded(np.concatenate([uv, dist[:, None]], axis=1), cell=0.008, depth=depth)


def central_projection(points: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Project ``points (N, 3)`` from ``center (3,)`` (behind the face) onto a plane: ``(N, 2)``.

    A face seen from a point inside the head is star-shaped, so this is one-to-one even where the
    surface turns away from +z (nose underside, chin, cheek sides).
    """
    d = points - center
    depth = np.maximum(d[:, 2], 1e-9)
    return np.stack([d[:, 0] / depth, d[:, 1] / depth], axis=1)


def orient_ccw(uv: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Reorder triangles so they are counter-clockwise in the 2D layout ``uv (N, 2)``."""
    a, b, c = (uv[triangles[:, i]] for i in range(3))
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    out = triangles.copy()
    flip = area < 0
    out[flip] = out[flip][:, [0, 2, 1]]
    return out


def delaunay_2d(uv: np.ndarray) -> np.ndarray:
    """Delaunay triangles ``(F, 3)`` int64 of ``uv (N, 2)``, counter-clockwise."""
    from scipy.spatial import Delaunay

    tri = Delaunay(uv).simplices.astype(np.int64)
    return orient_ccw(uv, tri)


def edge_lengths(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """``(F, 3)`` lengths of edges (v0v1, v1v2, v2v0)."""
    p = points[triangles]
    return np.linalg.norm(p - np.roll(p, -1, axis=1), axis=2)


def undirected_edges(triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges ``(E, 2)`` and how many triangles use each ``(E,)``."""
    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    e = np.sort(e, axis=1)
    edges, counts = np.unique(e, axis=0, return_counts=True)
    return edges, counts


def is_consistently_oriented(triangles: np.ndarray) -> bool:
    """True if every directed edge occurs at most once (neighbours agree on orientation)."""
    d = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    _, counts = np.unique(d, axis=0, return_counts=True)
    return bool(counts.max() <= 1)


def boundary_vertices(triangles: np.ndarray, n_vertices: int) -> np.ndarray:
    """``(N,)`` bool: vertices on an edge used by exactly one triangle."""
    edges, counts = undirected_edges(triangles)
    out = np.zeros(n_vertices, dtype=bool)
    out[edges[counts == 1].ravel()] = True
    return out


def outer_boundary_vertices(triangles: np.ndarray, n_vertices: int) -> np.ndarray:
    """``(N,)`` bool: vertices of the longest boundary loop (the outline, not holes or slits)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges, counts = undirected_edges(triangles)
    b = edges[counts == 1]
    out = np.zeros(n_vertices, dtype=bool)
    if len(b) == 0:
        return out
    g = coo_matrix((np.ones(len(b)), (b[:, 0], b[:, 1])), shape=(n_vertices, n_vertices))
    _, label = connected_components(g, directed=False)
    on = np.zeros(n_vertices, dtype=bool)
    on[b.ravel()] = True
    sizes = np.bincount(label[on])
    out[on] = label[on] == sizes.argmax()
    return out


def peel_long_triangles(points: np.ndarray, triangles: np.ndarray, max_len: float) -> np.ndarray:
    """Repeatedly remove border triangles with an edge longer than ``max_len``.

    Removes the sliver fans a 2D Delaunay puts over concave parts of the outline while keeping
    long triangles inside the surface (they close holes such as nostrils).
    """
    tri = triangles
    n = int(triangles.max()) + 1 if len(triangles) else 0
    for _ in range(1000):
        e = np.sort(np.stack([tri, np.roll(tri, -1, axis=1)], axis=2), axis=2)  # (F, 3, 2)
        keys = e[..., 0] * n + e[..., 1]
        uniq, counts = np.unique(keys, return_counts=True)
        on_border = np.isin(keys, uniq[counts == 1])
        long = edge_lengths(points, tri) > max_len
        drop = (long & on_border).any(axis=1)
        if not drop.any():
            break
        tri = tri[~drop]
    return tri


def triangle_pairs(triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(a (P,), b (P,))``: the triangles on either side of each interior edge."""
    t = np.asarray(triangles, np.int64)
    edges = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    face = np.tile(np.arange(len(t)), 3)
    key = np.sort(edges, axis=1)
    order = np.lexsort((key[:, 1], key[:, 0]))
    key, face = key[order], face[order]
    same = np.all(key[1:] == key[:-1], axis=1)
    return face[:-1][same], face[1:][same]


def folded_triangles(
    vertices: np.ndarray,
    triangles: np.ndarray,
    cos_max: float = -0.5,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """``(F,)`` bool: triangles sharing an edge with a neighbour whose normal points the other
    way (``cos < cos_max``), i.e. the mesh folds back on itself there. ``pairs``: the
    :func:`triangle_pairs` of ``triangles`` when known (they depend on the topology only)."""
    v = np.asarray(vertices, np.float64)
    t = np.asarray(triangles, np.int64)
    n = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    a, b = triangle_pairs(t) if pairs is None else pairs
    bad = np.einsum("ij,ij->i", n[a], n[b]) < cos_max
    out = np.zeros(len(t), bool)
    out[a[bad]] = True
    out[b[bad]] = True
    return out


def pit_vertices(
    points: np.ndarray, triangles: np.ndarray, center: np.ndarray, depth: float
) -> np.ndarray:
    """``(N,)`` bool: vertices of folded triangles (:func:`folded_triangles`) that lie more than
    ``depth`` closer to ``center`` than the mean of their neighbours: points of a cavity (the
    nostrils) that a triangulation in the :func:`central_projection` from ``center`` zigzags
    into the skin in front of it."""
    folded = folded_triangles(points, triangles)
    n = len(points)
    cand = np.zeros(n, dtype=bool)
    cand[triangles[folded].ravel()] = True
    a = adjacency(triangles, n)
    dist = np.linalg.norm(points - center, axis=1)
    mean_nb = (a @ dist) / np.maximum(np.asarray(a.sum(axis=1)).ravel(), 1.0)
    return cand & (mean_nb - dist > depth)


def adjacency(triangles: np.ndarray, n_vertices: int) -> scipy.sparse.csr_matrix:
    """Symmetric vertex adjacency (sparse, CSR)."""
    from scipy.sparse import coo_matrix

    edges, _ = undirected_edges(triangles)
    i = np.concatenate([edges[:, 0], edges[:, 1]])
    j = np.concatenate([edges[:, 1], edges[:, 0]])
    return coo_matrix((np.ones(len(i)), (i, j)), shape=(n_vertices, n_vertices)).tocsr()


def largest_component_triangles(triangles: np.ndarray, n_vertices: int) -> np.ndarray:
    """Keep only triangles of the largest edge-connected vertex component."""
    from scipy.sparse.csgraph import connected_components

    _, label = connected_components(adjacency(triangles, n_vertices), directed=False)
    used = label[triangles[:, 0]]
    big = np.bincount(used).argmax()
    return triangles[used == big]


def remove_unreferenced(triangles: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices no triangle uses. Returns (kept old indices ``(M,)``, reindexed triangles)."""
    used = np.zeros(n_vertices, dtype=bool)
    used[triangles.ravel()] = True
    kept = np.flatnonzero(used)
    remap = -np.ones(n_vertices, dtype=np.int64)
    remap[kept] = np.arange(len(kept))
    return kept, remap[triangles]


def smooth_field(
    points: np.ndarray, values: np.ndarray, sigma: float, radius: float | None = None
) -> np.ndarray:
    """Gaussian-smooth per-vertex ``values (N, ...)`` over Euclidean 3D neighbourhoods."""
    from scipy.sparse import coo_matrix
    from scipy.spatial import cKDTree

    radius = 2.5 * sigma if radius is None else radius
    tree = cKDTree(points)
    pairs = tree.query_pairs(radius, output_type="ndarray")
    i = np.concatenate([pairs[:, 0], pairs[:, 1], np.arange(len(points))])
    j = np.concatenate([pairs[:, 1], pairs[:, 0], np.arange(len(points))])
    d2 = np.sum((points[i] - points[j]) ** 2, axis=1)
    w = coo_matrix((np.exp(-0.5 * d2 / sigma**2), (i, j)), shape=(len(points), len(points))).tocsr()
    flat = values.reshape(len(points), -1).astype(np.float64)
    out = (w @ flat) / np.asarray(w.sum(axis=1))
    return out.reshape(values.shape)

"""Numpy geometry shared by every package: mesh normals, Euler rotations, pinhole projection.

Pure functions on single (unbatched) float64 arrays: ``vertices (N, 3)``, ``triangles (F, 3)``
int. The batched, differentiable torch versions live in :mod:`facerecon.render`
(:func:`facerecon.render.vertex_normals`, :func:`facerecon.render.euler_to_matrix`,
:func:`facerecon.render.project`) and follow the same conventions (docs/DESIGN.md):

* Normals: right-hand rule on ``(v1 - v0) x (v2 - v0)``, so triangles listed counter-clockwise
  seen from outside point outwards. A vertex normal is the area-weighted sum of its triangles'
  normals, normalised. **Isolated vertices** (used by no triangle, or only by zero-area ones:
  summed length ``<= NORMAL_EPS``) get ``(0, 0, 1)``, +z towards the camera: a unit vector, so
  files stay valid (glTF requires unit normals) and nothing downstream divides by zero.
* Pose ``R = Rz @ Ry @ Rx`` from ``angles = (x, y, z)`` radians, applied to row vectors ``p @ R^T``.
* Pinhole camera at ``(0, 0, cam_dist)`` looking down -z: depth ``d = cam_dist - z``,
  ``u = center + focal * x / d``, ``v = center - focal * y / d`` (OpenCV pixel centres, y down).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["NORMAL_EPS", "euler_matrix", "face_normals", "project_points", "vertex_normals"]

NORMAL_EPS = 1e-12
"""Summed vertex-normal length at or below which a vertex counts as isolated."""


def face_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unnormalised triangle normals ``(v1 - v0) x (v2 - v0)``.

    Args:
        vertices: ``(N, 3)`` positions (computed in float64).
        triangles: ``(F, 3)`` int vertex indices.

    Returns:
        ``(F, 3)`` float64; the length is twice the triangle area.
    """
    v = np.asarray(vertices, dtype=np.float64)[np.asarray(triangles)]
    return np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals.

    Args:
        vertices: ``(N, 3)`` positions (computed in float64).
        triangles: ``(F, 3)`` int vertex indices.

    Returns:
        ``(N, 3)`` float64 unit normals; isolated vertices get ``(0, 0, 1)`` (module docstring).
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    triangles = np.asarray(triangles)
    fn = face_normals(vertices, triangles)
    n = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(n, triangles[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    out = np.tile(np.array([0.0, 0.0, 1.0]), (len(vertices), 1))
    ok = length[:, 0] > NORMAL_EPS
    out[ok] = n[ok] / length[ok]
    return out


def euler_matrix(angles: np.ndarray) -> np.ndarray:
    """Rotation ``R = Rz @ Ry @ Rx``.

    Args:
        angles: ``(3,)`` rotations about x, y, z in radians.

    Returns:
        ``(3, 3)`` float64 (apply to row vectors as ``p @ R^T``); the numpy twin of
        :func:`facerecon.render.euler_to_matrix` (equal to rounding).
    """
    x, y, z = (float(a) for a in angles)
    cx, sx, cy, sy, cz, sz = (
        math.cos(x),
        math.sin(x),
        math.cos(y),
        math.sin(y),
        math.cos(z),
        math.sin(z),
    )
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def project_points(
    points: np.ndarray, focal: float, center: float, cam_dist: float = 10.0
) -> np.ndarray:
    """Pinhole projection of a camera at ``(0, 0, cam_dist)`` looking down -z.

    Args:
        points: ``(K, 3)`` points in the camera's units (scene units for the project camera;
            ``cam_dist = 0`` for points already in a camera frame, camera at the origin).
        focal: focal length in pixels.
        center: principal point ``u = v = center`` in pixels.
        cam_dist: camera position on +z.

    Returns:
        ``(K, 2)`` float64 pixels ``u = center + focal * x / d``, ``v = center - focal * y / d``
        with depth ``d = cam_dist - z``; the numpy twin of :func:`facerecon.render.project`.
    """
    p = np.asarray(points, dtype=np.float64)
    d = cam_dist - p[:, 2]
    return np.stack([center + focal * p[:, 0] / d, center - focal * p[:, 1] / d], axis=-1)

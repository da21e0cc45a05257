"""facerecon.geometry: the numpy twins of the torch camera and normals agree with them."""

from __future__ import annotations

import numpy as np
import torch

from facerecon.geometry import euler_matrix, face_normals, project_points, vertex_normals
from facerecon.render import CameraConfig, euler_to_matrix, project
from facerecon.render import vertex_normals as render_vertex_normals


def test_euler_matrix_matches_render():
    angles = np.random.default_rng(0).uniform(-1.6, 1.6, (50, 3))
    ref = euler_to_matrix(torch.from_numpy(angles)).numpy()
    ours = np.stack([euler_matrix(a) for a in angles])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_project_points_matches_render():
    scene = np.random.default_rng(1).normal(0, 0.5, (40, 3))
    cam = CameraConfig()
    uv, _ = project(torch.from_numpy(scene)[None], cam)
    ours = project_points(scene, cam.focal, cam.center, cam.cam_dist)
    np.testing.assert_allclose(ours, uv[0].numpy(), rtol=0, atol=1e-9)


def test_vertex_normals_match_render_and_isolated_vertices_point_to_plus_z():
    rng = np.random.default_rng(2)
    v = rng.normal(size=(6, 3))
    f = np.array([[0, 1, 2], [0, 2, 3], [1, 3, 2]])  # vertices 4 and 5 are isolated
    n = vertex_normals(v, f)
    t = render_vertex_normals(torch.from_numpy(v)[None], torch.from_numpy(f))[0].numpy()
    np.testing.assert_allclose(n[:4], t[:4], rtol=0, atol=1e-12)  # torch gives 0 where isolated
    np.testing.assert_array_equal(n[4:], [[0.0, 0.0, 1.0]] * 2)
    np.testing.assert_allclose(np.linalg.norm(face_normals(v, f), axis=1) / 2, _areas(v, f))


def _areas(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    a, b, c = (np.linalg.norm(v[f[:, i]] - v[f[:, j]], axis=1) for i, j in ((0, 1), (1, 2), (2, 0)))
    s = (a + b + c) / 2
    return np.sqrt(s * (s - a) * (s - b) * (s - c))

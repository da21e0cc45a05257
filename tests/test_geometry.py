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


def _crops(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 2, 3)`` crop-to-photo transforms: scale 1.5-3 photo px per crop px, any offset."""
    a = rng.uniform(1.5, 3.0, n)
    m = np.zeros((n, 2, 3))
    m[:, 0, 0] = m[:, 1, 1] = a
    m[:, :, 2] = rng.uniform(100, 900, (n, 2))
    return m


def test_trans_in_the_photo_camera_keeps_pixel_and_size_and_inverts():
    from facerecon.geometry import trans_crop_to_photo

    rng = np.random.default_rng(3)
    cam = CameraConfig()
    crops = _crops(rng, 20)
    trans = rng.normal(0, [0.3, 0.3, 1.0], (20, 3))
    args = (crops, cam.focal, cam.center, 1800.0, (640.0, 360.0), cam.cam_dist)
    photo = trans_crop_to_photo(trans, *args)
    back = trans_crop_to_photo(photo, *args, inverse=True)
    np.testing.assert_allclose(back, trans, rtol=0, atol=1e-12)
    for k in range(20):
        # the origin and a point beside it at the same depth: the same photo pixel through both
        # cameras (same position and the same size at the origin's depth)
        for off in (np.zeros(3), np.array([0.5, -0.3, 0.0])):
            uv_crop = project_points((trans[k] + off)[None], cam.focal, cam.center, cam.cam_dist)
            in_photo = crops[k, :, :2] @ uv_crop[0] + crops[k, :, 2]
            p = photo[k] + off
            d = cam.cam_dist - p[2]
            uv_photo = np.array([640.0 + 1800.0 * p[0] / d, 360.0 - 1800.0 * p[1] / d])
            np.testing.assert_allclose(uv_photo, in_photo, rtol=0, atol=1e-9)


def test_smoothing_in_the_photo_removes_the_crops_jitter():
    from facerecon.clip import smooth_coeffs, trans_in_photo
    from facerecon.morphable import CoeffLayout

    rng = np.random.default_rng(4)
    n, size = 60, (1280, 720)
    t = np.arange(n) / 25.0
    # the head's true path in the photo camera; each frame's crop jitters around the face
    crops = np.zeros((n, 2, 3))
    a = 2.0 * (1 + rng.normal(0, 0.02, n))
    crops[:, 0, 0] = crops[:, 1, 1] = a
    crops[:, 0, 2] = 400 + 100 * t + rng.normal(0, 4, n)
    crops[:, 1, 2] = 150 + rng.normal(0, 4, n)
    lay = CoeffLayout(n_id=4, n_exp=3, n_tex=4)
    sl = lay.slices()
    true_photo = np.stack([0.2 * np.sin(t), 0.1 * t, 0.3 * np.cos(t)], 1)
    coeffs = np.zeros((n, lay.size))
    coeffs[:, sl["trans"]] = trans_in_photo(true_photo, crops, size, inverse=True)
    coeffs[:, sl["trans"]] += rng.normal(0, 0.003, (n, 3))  # the network's own noise
    err = {}
    for name, kw in (("crop", {}), ("photo", {"crop_to_original": crops, "size": size})):
        out = smooth_coeffs(coeffs, lay, "poly", 25.0, **kw)
        got = trans_in_photo(out[:, sl["trans"]], crops, size)
        err[name] = np.abs(np.diff(got - true_photo, axis=0)).mean()
    raw = trans_in_photo(coeffs[:, sl["trans"]], crops, size)
    err["raw"] = np.abs(np.diff(raw - true_photo, axis=0)).mean()
    # smoothing crop-relative values keeps most of the crops' jitter; in the photo it goes
    assert err["photo"] < 0.3 * err["raw"] and err["photo"] < 0.5 * err["crop"], err

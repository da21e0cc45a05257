"""Numpy geometry shared by every package: mesh normals, Euler rotations, pinhole projection,
similarity transforms and the closed-form Umeyama fit.

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
from dataclasses import dataclass

import numpy as np

__all__ = [
    "NORMAL_EPS",
    "Similarity",
    "crop_focal_in_photo",
    "euler_matrix",
    "face_normals",
    "project_points",
    "trans_crop_to_photo",
    "umeyama",
    "vertex_normals",
]

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


def crop_focal_in_photo(crop_to_original: np.ndarray, focal: float) -> np.ndarray:
    """``(...)`` the crop camera's focal length in photo pixels, ``a * focal``, for crop
    transforms ``(..., 2, 3)`` ``photo = a * crop + t`` (scale and translation, no rotation: the
    paper's alignment, :mod:`facerecon.detect.align`)."""
    return np.asarray(crop_to_original, np.float64)[..., 0, 0] * float(focal)


def trans_crop_to_photo(
    trans: np.ndarray,
    crop_to_original: np.ndarray,
    focal: float,
    center: float,
    photo_focal: float,
    photo_center: tuple[float, float],
    cam_dist: float = 10.0,
    inverse: bool = False,
) -> np.ndarray:
    """A head's translation in its crop's camera to the same head in one camera of the photo.

    Each frame (or photo) of a video has its own crop, so its ``trans`` is relative to a camera
    that moves with the crop (``photo = a * crop + t``: the crop camera has focal ``a * focal``
    and principal point ``a * center + t`` in photo pixels). This places the head in a single
    camera of the photo (focal ``photo_focal``, principal point ``photo_center``, the same
    axis conventions and ``cam_dist``) so that its origin projects to the same photo pixel
    and appears at the same size (pixels per scene unit at the origin, hence its depth is
    ``d * photo_focal / (a * focal)``). The map is exact for those two quantities and
    ``inverse`` undoes it exactly with the same crop; the rotation is left as it is: the crop
    camera's axis is tilted from the photo's by the angle of the crop centre's offset
    (``offset / photo_focal`` radians: about 0.1 degree per 2 crop pixels of crop jitter).

    Args:
        trans: ``(..., 3)`` translations in the crop cameras (scene units); in the photo camera
            with ``inverse``.
        crop_to_original: ``(..., 2, 3)`` crop-to-photo transforms.
        focal, center: the crop camera's focal length and principal point (crop pixels).
        photo_focal: the photo camera's focal length (photo pixels; e.g. the median of
            :func:`crop_focal_in_photo` over a clip, so depths stay near ``cam_dist``).
        photo_center: the photo camera's principal point ``(u, v)`` (photo pixels).
        cam_dist: camera position on +z (depth ``d = cam_dist - z``).
        inverse: map photo-camera translations back to each crop's camera.

    Returns:
        ``(..., 3)`` translations in the photo camera (in the crop cameras with ``inverse``).
    """
    m = np.asarray(crop_to_original, np.float64)
    a = m[..., 0, 0]
    crop_cam = (a * focal, a * center + m[..., 0, 2], a * center + m[..., 1, 2])
    photo_cam = (photo_focal, photo_center[0], photo_center[1])
    src, dst = (photo_cam, crop_cam) if inverse else (crop_cam, photo_cam)
    return _same_pixel_and_size(np.asarray(trans, np.float64), src, dst, cam_dist)


def _same_pixel_and_size(tr: np.ndarray, src: tuple, dst: tuple, cam_dist: float) -> np.ndarray:
    """``tr (..., 3)`` seen by camera ``src = (focal, u0, v0)`` moved into camera ``dst`` so
    that the origin lands on the same pixel at the same pixels per scene unit."""
    (fs, us, vs), (fd, ud, vd) = src, dst
    d = cam_dist - tr[..., 2]
    pu = us + fs * tr[..., 0] / d  # the origin's pixel
    pv = vs - fs * tr[..., 1] / d
    depth = d * fd / fs
    return np.stack([(pu - ud) * depth / fd, -(pv - vd) * depth / fd, cam_dist - depth], -1)


@dataclass(frozen=True)
class Similarity:
    """``p -> scale * p @ R.T + t``; scale > 0, R (3, 3) a rotation, t (3,)."""

    scale: float
    R: np.ndarray
    t: np.ndarray

    @classmethod
    def identity(cls) -> Similarity:
        return cls(1.0, np.eye(3), np.zeros(3))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform ``points (..., 3)``."""
        return self.scale * np.asarray(points, dtype=np.float64) @ self.R.T + self.t

    def inverse(self) -> Similarity:
        return Similarity(1.0 / self.scale, self.R.T, -(self.t @ self.R) / self.scale)

    def compose(self, first: Similarity) -> Similarity:
        """``self ∘ first``: apply ``first``, then ``self``."""
        return Similarity(
            self.scale * first.scale,
            self.R @ first.R,
            self.scale * first.t @ self.R.T + self.t,
        )

    def matrix(self) -> np.ndarray:
        """4x4 matrix ``M`` acting on column vectors: ``[p', 1] = M @ [p, 1]``."""
        m = np.eye(4)
        m[:3, :3] = self.scale * self.R
        m[:3, 3] = self.t
        return m

    def to_dict(self) -> dict:
        return {"scale": float(self.scale), "R": self.R.tolist(), "t": self.t.tolist()}


def umeyama(
    src: np.ndarray, dst: np.ndarray, with_scale: bool = True, weights: np.ndarray | None = None
) -> Similarity:
    """Least-squares similarity ``T`` minimising ``sum w_i |T(src_i) - dst_i|^2`` (Umeyama 1991).

    src, dst: ``(N, 3)`` corresponding points, N >= 3 not all collinear; weights ``(N,)`` >= 0.
    With ``with_scale=False`` the scale is fixed at 1 (rigid).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 3:
        raise ValueError(f"umeyama needs two (N>=3, 3) arrays, got {src.shape} and {dst.shape}")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w[:, None]).T @ xs  # (3, 3) = sum w_i xd_i xs_i^T
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1.0
    rot = u @ np.diag(d) @ vt
    var_s = float(w @ np.sum(xs**2, axis=1))
    if var_s <= 1e-18:
        raise ValueError("umeyama: source points are all identical")
    scale = float(sig @ d / var_s) if with_scale else 1.0
    t = mu_d - scale * mu_s @ rot.T
    return Similarity(scale, rot, t)

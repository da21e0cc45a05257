"""Pose from 3D landmarks: weighted similarity Procrustes and its perspective reading.

Pure functions on batched tensors, differentiable (SVD), any float dtype and device.

* :func:`umeyama` (from :mod:`facerecon.procrustes`): the similarity
  ``dst ≈ scale * src @ R^T + t`` of least weighted squared error (Umeyama 1991; reflections
  excluded).
* :func:`matrix_to_euler`: the inverse of :func:`facerecon.render.euler_to_matrix`
  (``R = Rz @ Ry @ Rx``).
* :func:`pose_from_landmarks`: the camera pose (``angles``, ``trans``) that puts the face
  model's landmark vertices onto 3D landmarks given in *crop pixels* ``(u, v, depth)`` (the
  output of the pose-guided network, :mod:`facerecon.nets.pgn`). A scaled-orthographic
  Procrustes gives rotation, scale and image-plane offset in closed form; the scale is the
  focal length over the face's distance, which fixes the depth of the translation; then
  ``perspective_iters`` rounds re-scale every point's image offset by its own depth over the
  mean depth (what perspective does to it) and solve again, so the pose reproduces the
  landmarks under the real pinhole camera, not only the weak-perspective one.
"""

from __future__ import annotations

import torch

from facerecon.procrustes import umeyama
from facerecon.render.camera import CameraConfig

__all__ = ["matrix_to_euler", "pose_from_landmarks", "umeyama"]


def matrix_to_euler(R: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Euler angles ``(x, y, z)`` (radians) of rotations ``R = Rz @ Ry @ Rx``.

    Args:
        R: ``(B, 3, 3)`` rotation matrices.
        eps: ``sin(y)`` is clamped to ``±(1 - eps)`` so the gradient stays finite at ±90°
            yaw (gimbal lock: there x and z are not separable; the pair returned still gives
            the same matrix up to that clamp).

    Returns:
        ``(B, 3)`` with ``y`` in ``[-pi/2, pi/2]``; ``euler_to_matrix(matrix_to_euler(R)) == R``.
    """
    sy = (-R[:, 2, 0]).clamp(-1 + eps, 1 - eps)
    y = torch.asin(sy)
    x = torch.atan2(R[:, 2, 1], R[:, 2, 2])
    z = torch.atan2(R[:, 1, 0], R[:, 0, 0])
    return torch.stack([x, y, z], dim=-1)


def pose_from_landmarks(
    model_points_mm: torch.Tensor,
    points_px: torch.Tensor,
    camera: CameraConfig | None = None,
    weights: torch.Tensor | None = None,
    perspective_iters: int = 2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pose that maps model landmarks onto 3D landmarks in crop pixels.

    Args:
        model_points_mm: ``(B, K, 3)`` the model's landmark vertices (mm, model space) under
            the current identity and expression.
        points_px: ``(B, K, 3)`` ``(u, v, depth)``: image position in crop pixels (OpenCV
            convention, y down) and depth towards the camera in the same pixel units (only
            depth differences matter).
        camera: the crop camera (``CameraConfig()``: 224 px, focal 1015, 10 units away).
        weights: ``(B, K)`` or ``(K,)`` point weights (default 1).
        perspective_iters: perspective correction rounds (0: scaled orthographic only).

    Returns:
        ``angles (B, 3)`` radians, ``trans (B, 3)`` scene units (the renderer's pose: scene
        point ``p = (v / mm_per_unit) @ R^T + trans``), and ``scale (B,)``: pixels per scene
        unit at the landmarks' mean depth.
    """
    camera = camera or CameraConfig()
    f, c = camera.focal, camera.center
    src = model_points_mm / camera.mm_per_unit
    x = points_px[..., 0] - c
    y = c - points_px[..., 1]
    z = points_px[..., 2]
    wn = src.new_ones(src.shape[:2]) if weights is None else weights.to(src).expand(src.shape[:2])
    wn = wn / wn.sum(1, keepdim=True).clamp_min(1e-12)
    ratio = torch.ones_like(x)
    for it in range(int(perspective_iters) + 1):
        dst = torch.stack([x * ratio, y * ratio, z], dim=-1)
        scale, rot, t = umeyama(src, dst, wn)
        rs = src @ rot.transpose(1, 2)  # (B, K, 3) rotated model points
        mean_rot = (wn[..., None] * rs).sum(1)  # (B, 3)
        dist = f / scale  # camera distance of the landmarks' mean, scene units
        trans = torch.stack(
            [t[:, 0] / scale, t[:, 1] / scale, camera.cam_dist - dist - mean_rot[:, 2]], dim=-1
        )
        if it == perspective_iters:
            break
        depth = camera.cam_dist - (rs[..., 2] + trans[:, None, 2])  # (B, K) per-point
        ratio = depth / dist[:, None]
    return matrix_to_euler(rot), trans, scale

"""Pinhole camera of the paper: pose, scene units and pixel projection.

Conventions (docs/DESIGN.md, binding):

* Face models are in millimetres; **1 scene unit = 100 mm** (``mm_per_unit``), so a ~150 mm wide
  face is ~1.5 units wide and, seen from 10 units away with focal 1015 px, ~152 px wide.
* Model space: +x subject's left (image right), +y up, +z towards the camera.
* Pose ``R = Rz @ Ry @ Rx`` from ``angles = (x, y, z)`` radians, applied to row vectors:
  ``p' = (p_mm / mm_per_unit) @ R^T + trans``.
* The camera sits at ``(0, 0, cam_dist)`` looking down -z; camera depth ``d = cam_dist - z``.
* ``u = center + focal * x / d``, ``v = center - focal * y / d`` (image y points down). Pixel
  coordinates follow OpenCV: the pixel in row ``r``, column ``c`` has its centre at ``(u=c, v=r)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

__all__ = ["CameraConfig", "euler_to_matrix", "project", "transform"]


@dataclass
class CameraConfig:
    """Square pinhole camera of the crop (paper: 224 px, focal 1015 px, centre 112).

    Attributes:
        focal: focal length in pixels.
        size: image width = height in pixels.
        center: principal point (u = v = center) in pixels.
        cam_dist: distance of the camera from the scene origin along +z, scene units.
        mm_per_unit: millimetres per scene unit (100: BFM micrometres / 1e5).
        near: near plane in camera depth (scene units); triangles closer are dropped.
        far: far plane in camera depth (scene units); triangles farther are dropped.
    """

    focal: float = 1015.0
    size: int = 224
    center: float = 112.0
    cam_dist: float = 10.0
    mm_per_unit: float = 100.0
    near: float = 5.0
    far: float = 15.0

    def scaled(self, size: int) -> CameraConfig:
        """The same view rendered at ``size`` x ``size`` pixels.

        Focal and principal point scale by ``size / self.size`` so that a scene point lands on the
        same relative image position (``u_new = u * size / self.size`` for the paper's centred
        principal point, e.g. 112 px at 224 becomes 56 px at 112).
        """
        s = float(size) / float(self.size)
        return replace(self, focal=self.focal * s, center=self.center * s, size=int(size))


def euler_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``R = Rz @ Ry @ Rx`` from Euler angles.

    Args:
        angles: ``(B, 3)`` rotations about x, y, z in radians.

    Returns:
        ``(B, 3, 3)`` rotation matrices (apply to row vectors as ``p @ R^T``).
    """
    x, y, z = angles.unbind(-1)
    cx, sx = torch.cos(x), torch.sin(x)
    cy, sy = torch.cos(y), torch.sin(y)
    cz, sz = torch.cos(z), torch.sin(z)
    # Closed form of Rz @ Ry @ Rx.
    rows = [
        cz * cy,
        cz * sy * sx - sz * cx,
        cz * sy * cx + sz * sx,
        sz * cy,
        sz * sy * sx + cz * cx,
        sz * sy * cx - cz * sx,
        -sy,
        cy * sx,
        cy * cx,
    ]
    return torch.stack(rows, dim=-1).reshape(*angles.shape[:-1], 3, 3)


def transform(
    vertices_mm: torch.Tensor,
    angles: torch.Tensor,
    trans: torch.Tensor,
    camera: CameraConfig | None = None,
) -> torch.Tensor:
    """Model-space millimetres to posed scene units.

    Args:
        vertices_mm: ``(B, N, 3)`` points in mm (model space).
        angles: ``(B, 3)`` Euler angles in radians (``R = Rz @ Ry @ Rx``).
        trans: ``(B, 3)`` translation in scene units.
        camera: supplies ``mm_per_unit`` (default ``CameraConfig()``: 100 mm per unit).

    Returns:
        ``(B, N, 3)`` scene points ``(p / mm_per_unit) @ R^T + trans``.
    """
    camera = camera or CameraConfig()
    R = euler_to_matrix(angles)
    return torch.matmul(vertices_mm / camera.mm_per_unit, R.transpose(-1, -2)) + trans.unsqueeze(-2)


def project(
    scene: torch.Tensor, camera: CameraConfig | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Perspective projection to pixels.

    Args:
        scene: ``(B, N, 3)`` scene points (units of 100 mm).
        camera: the camera (default ``CameraConfig()``).

    Returns:
        uv: ``(B, N, 2)`` pixel coordinates ``(u, v)``, OpenCV pixel-centre convention, y down.
        depth: ``(B, N)`` camera depth ``d = cam_dist - z`` (positive in front of the camera).
    """
    camera = camera or CameraConfig()
    depth = camera.cam_dist - scene[..., 2]
    u = camera.center + camera.focal * scene[..., 0] / depth
    v = camera.center - camera.focal * scene[..., 1] / depth
    return torch.stack([u, v], dim=-1), depth

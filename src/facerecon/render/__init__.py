"""facerecon.render: camera, SH shading and a differentiable rasterizer (plain PyTorch).

Public API::

    CameraConfig, euler_to_matrix, transform, project            # camera.py
    umeyama, matrix_to_euler, pose_from_landmarks                # pose.py
    vertex_normals, face_normals, sh_basis, sh_shading, shade    # shading.py
    rasterize, depth_map, interpolate, Fragments                 # rasterizer.py
    nvdiffrast_available                                         # rasterizer.py
    render, render_attributes, render_parse, RenderOutput        # renderer.py
    visible_vertices                                             # renderer.py
"""

from facerecon.render.camera import CameraConfig, euler_to_matrix, project, transform
from facerecon.render.pose import matrix_to_euler, pose_from_landmarks, umeyama
from facerecon.render.rasterizer import (
    Fragments,
    RenderBackendError,
    depth_map,
    interpolate,
    nvdiffrast_available,
    rasterize,
)
from facerecon.render.renderer import (
    RenderOutput,
    render,
    render_attributes,
    render_parse,
    visible_vertices,
)
from facerecon.render.shading import (
    AMBIENT_OFFSET,
    face_normals,
    sh_basis,
    sh_shading,
    shade,
    vertex_normals,
)

__all__ = [
    "AMBIENT_OFFSET",
    "CameraConfig",
    "Fragments",
    "RenderBackendError",
    "RenderOutput",
    "depth_map",
    "euler_to_matrix",
    "face_normals",
    "interpolate",
    "matrix_to_euler",
    "nvdiffrast_available",
    "pose_from_landmarks",
    "project",
    "rasterize",
    "render",
    "render_attributes",
    "render_parse",
    "sh_basis",
    "sh_shading",
    "shade",
    "transform",
    "umeyama",
    "vertex_normals",
    "visible_vertices",
]

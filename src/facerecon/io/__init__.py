"""facerecon.io: mesh exports, result files, overlays and the HTML report.

Meshes are millimetres in OBJ/PLY and metres in GLB (glTF's unit); see :mod:`.mesh`.
``vertex_normals`` is :func:`facerecon.geometry.vertex_normals` (what the GLB writer uses).
"""

from facerecon.geometry import vertex_normals
from facerecon.io.mesh import (
    MeshAnimation,
    MeshData,
    bake_vertex_colors_to_texture,
    cylindrical_uv,
    glb_bytes,
    parse_glb,
    png_bytes,
    read_glb,
    read_obj,
    read_ply,
    write_glb,
    write_obj,
    write_ply,
)
from facerecon.io.overlay import draw_landmarks, overlay_image, save_png, warp_to_original
from facerecon.io.paths import ensure_writable
from facerecon.io.pts import read_pts
from facerecon.io.report import ReportEntry, report_conflicts, write_report
from facerecon.io.results import (
    load_coefficients,
    read_landmarks_json,
    save_coefficients,
    write_landmarks_json,
)

__all__ = [
    "MeshAnimation",
    "MeshData",
    "ReportEntry",
    "bake_vertex_colors_to_texture",
    "cylindrical_uv",
    "draw_landmarks",
    "ensure_writable",
    "glb_bytes",
    "load_coefficients",
    "overlay_image",
    "parse_glb",
    "png_bytes",
    "read_glb",
    "read_landmarks_json",
    "read_obj",
    "read_ply",
    "read_pts",
    "report_conflicts",
    "save_coefficients",
    "save_png",
    "vertex_normals",
    "warp_to_original",
    "write_glb",
    "write_landmarks_json",
    "write_obj",
    "write_ply",
    "write_report",
]

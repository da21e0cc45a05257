"""Convenience renderer: posed, SH-lit, Gouraud-shaded face images in the paper's camera."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from facerecon.render.camera import CameraConfig, project, transform
from facerecon.render.rasterizer import Fragments, interpolate, rasterize
from facerecon.render.shading import shade, vertex_normals

__all__ = ["RenderOutput", "render", "render_attributes", "render_parse", "visible_vertices"]


@dataclass
class RenderOutput:
    """Result of :func:`render` (``S = camera.size``).

    Attributes:
        image: ``(B, 3, S, S)`` RGB, albedo x SH irradiance (0..1 for plausible lighting; not
            clamped so that gradients survive), 0 on background.
        mask: ``(B, 1, S, S)`` 1.0 where a triangle is visible, in the vertices' dtype.
        depth: ``(B, 1, S, S)`` camera depth ``cam_dist - z`` in scene units, 0 on background.
        face_idx: ``(B, S, S)`` int64 visible triangle, -1 on background.
        bary: ``(B, S, S, 3)`` perspective-correct barycentrics.
        uv: ``(B, N, 2)`` projected vertices in pixels (e.g. ``uv[:, landmarks68]``).
        normals: ``(B, N, 3)`` unit vertex normals after rotation (what was lit).
        colors: ``(B, N, 3)`` shaded vertex colours that were interpolated.
        fragments: the raw :class:`Fragments` (for :func:`interpolate` of more attributes).
    """

    image: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor
    face_idx: torch.Tensor
    bary: torch.Tensor
    uv: torch.Tensor
    normals: torch.Tensor
    colors: torch.Tensor
    fragments: Fragments


def _posed_fragments(
    vertices_mm: torch.Tensor,
    triangles: torch.Tensor,
    angles: torch.Tensor,
    trans: torch.Tensor,
    camera: CameraConfig,
    cull_backfaces: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Fragments]:
    """Pose, project and rasterize in ``camera``: ``scene (B, N, 3)``, ``uv (B, N, 2)``,
    ``triangles (F, 3)`` int64 on the vertices' device and the :class:`Fragments`."""
    scene = transform(vertices_mm, angles, trans, camera)
    uv, depth = project(scene, camera)
    triangles = triangles.to(device=vertices_mm.device, dtype=torch.int64)
    frags = rasterize(
        uv,
        depth,
        triangles,
        (camera.size, camera.size),
        cull_backfaces=cull_backfaces,
        near=camera.near,
        far=camera.far,
        backend=backend,
    )
    return scene, uv, triangles, frags


def render(
    vertices_mm: torch.Tensor,
    albedo: torch.Tensor,
    triangles: torch.Tensor,
    angles: torch.Tensor,
    trans: torch.Tensor,
    gamma: torch.Tensor,
    camera: CameraConfig | None = None,
    cull_backfaces: bool = False,
    backend: str = "torch",
) -> RenderOutput:
    """Pose, light and rasterize a face (the paper's image formation).

    Vertex colours ``albedo * sh_shading(normals, gamma)`` are computed with normals of the posed
    shape (normals rotate with the shape) and interpolated perspective-correctly per pixel.

    Args:
        vertices_mm: ``(B, N, 3)`` model-space vertices in mm.
        albedo: ``(B, N, 3)`` in 0..1.
        triangles: ``(F, 3)`` int64, counter-clockwise seen from outside.
        angles: ``(B, 3)`` radians; trans: ``(B, 3)`` scene units; gamma: ``(B, 27)``.
        camera: default ``CameraConfig()`` (224 px, focal 1015); use ``camera.scaled(s)`` for
            other resolutions.
        cull_backfaces, backend: passed to :func:`rasterize`.

    Returns:
        :class:`RenderOutput`.
    """
    camera = camera or CameraConfig()
    scene, uv, triangles, frags = _posed_fragments(
        vertices_mm, triangles, angles, trans, camera, cull_backfaces, backend
    )
    normals = vertex_normals(scene, triangles)
    colors = shade(albedo, normals, gamma)
    image = interpolate(colors, frags, triangles).permute(0, 3, 1, 2)
    return RenderOutput(
        image=image,
        mask=frags.mask.unsqueeze(1).to(vertices_mm.dtype),
        depth=frags.depth.unsqueeze(1),
        face_idx=frags.face_idx,
        bary=frags.bary,
        uv=uv,
        normals=normals,
        colors=colors,
        fragments=frags,
    )


def render_attributes(
    vertices_mm: torch.Tensor,
    attrs: torch.Tensor,
    triangles: torch.Tensor,
    angles: torch.Tensor,
    trans: torch.Tensor,
    camera: CameraConfig | None = None,
    mode: str = "bary",
    cull_backfaces: bool = False,
    backend: str = "torch",
) -> tuple[torch.Tensor, Fragments]:
    """Render arbitrary per-vertex attributes (labels, coordinates, normals) without lighting.

    Args:
        vertices_mm: ``(B, N, 3)`` mm; attrs: ``(B, N, C)`` or ``(N, C)`` (shared by the batch).
        triangles, angles, trans, camera: as in :func:`render`.
        mode: ``"bary"`` interpolates; ``"nearest"`` takes the attribute of the visible triangle's
            vertex with the largest barycentric (for discrete labels; no gradient to positions).
        cull_backfaces, backend: passed to :func:`rasterize`.

    Returns:
        ``(B, C, S, S)`` attribute image (0 on background) and the :class:`Fragments`.
    """
    camera = camera or CameraConfig()
    B = vertices_mm.shape[0]
    if attrs.dim() == 2:
        attrs = attrs.unsqueeze(0).expand(B, *attrs.shape)
    if mode not in ("bary", "nearest"):
        raise ValueError(f"unknown mode {mode!r}")
    _, _, triangles, frags = _posed_fragments(
        vertices_mm, triangles, angles, trans, camera, cull_backfaces, backend
    )
    if mode == "nearest":
        onehot = torch.nn.functional.one_hot(frags.bary.detach().argmax(-1), 3)
        hard = Fragments(
            face_idx=frags.face_idx,
            bary=onehot.to(attrs.dtype if attrs.is_floating_point() else vertices_mm.dtype)
            * frags.mask.unsqueeze(-1),
            depth=frags.depth,
            mask=frags.mask,
        )
        out = interpolate(attrs.to(hard.bary.dtype), hard, triangles).to(attrs.dtype)
    else:
        out = interpolate(attrs, frags, triangles)
    return out.permute(0, 3, 1, 2), frags


def render_parse(
    vertices_mm: torch.Tensor,
    triangles: torch.Tensor,
    vertex_labels: torch.Tensor,
    angles: torch.Tensor,
    trans: torch.Tensor,
    n_classes: int,
    camera: CameraConfig | None = None,
    other_label: int = 1,
    backend: str = "torch",
    fragments: Fragments | None = None,
) -> torch.Tensor:
    """Soft face parse of a render: per-pixel class probabilities ``(B, n_classes, S, S)``.

    Each vertex carries the one-hot of its label (``Region.OTHER`` vertices count as
    ``other_label``, skin); the one-hots are interpolated with the barycentrics, so a pixel
    near a label boundary inside a triangle gets a mixture, and moving the vertices moves the
    boundary: the result is differentiable with respect to the shape (and pose). Class 0 is the
    background: ``1 - coverage``. (DF-MVR's release runs a frozen parse network on a detached
    render, so its parse loss gives no gradient.)

    Args:
        vertices_mm: ``(B, N, 3)`` mm; triangles: ``(F, 3)``; vertex_labels: ``(N,)`` int.
        angles, trans, camera, backend: as in :func:`render`.
        n_classes: classes of the parse (``facerecon.labels.NUM_PARSE_CLASSES``).
        other_label: the class of labels ``>= n_classes``.
        fragments: the :class:`Fragments` of a render of the same vertices and pose (e.g.
            ``RenderOutput.fragments``): reused instead of rasterizing again.
    """
    labels = vertex_labels.to(device=vertices_mm.device, dtype=torch.int64)
    labels = torch.where(labels >= n_classes, torch.full_like(labels, other_label), labels)
    onehot = torch.nn.functional.one_hot(labels, n_classes).to(vertices_mm.dtype)
    if fragments is None:
        probs, frags = render_attributes(
            vertices_mm, onehot, triangles, angles, trans, camera, backend=backend
        )
    else:
        frags = fragments
        tri = triangles.to(device=vertices_mm.device, dtype=torch.int64)
        onehot = onehot.unsqueeze(0).expand(vertices_mm.shape[0], *onehot.shape)
        probs = interpolate(onehot, frags, tri).permute(0, 3, 1, 2)
    cover = frags.mask.unsqueeze(1).to(probs.dtype)
    background = (1.0 - cover) + probs[:, :1]
    return torch.cat([background, probs[:, 1:]], dim=1)


def visible_vertices(
    uv: torch.Tensor, depth: torch.Tensor, zbuffer: torch.Tensor, tol: float = 0.02
) -> torch.Tensor:
    """Which vertices a view sees: projected inside the image, onto a covered pixel, and not
    behind that pixel's nearest surface by more than ``tol``.

    Args:
        uv: ``(B, N, 2)`` projected vertices in pixels (:func:`project`).
        depth: ``(B, N)`` their camera depth (scene units).
        zbuffer: ``(B, 1, H, W)`` or ``(B, H, W)`` camera depth of the nearest surface, 0 on
            background (``RenderOutput.depth`` of the same vertices and pose).
        tol: depth tolerance in scene units (0.02 = 2 mm); read at the nearest pixel centre.

    Returns:
        ``(B, N)`` bool (no gradient).
    """
    z = zbuffer.reshape(zbuffer.shape[0], *zbuffer.shape[-2:])
    b, h, w = z.shape
    with torch.no_grad():
        col = torch.round(uv[..., 0]).long()
        row = torch.round(uv[..., 1]).long()
        inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        flat = (row.clamp(0, h - 1) * w + col.clamp(0, w - 1)).reshape(b, -1)
        zv = z.reshape(b, -1).gather(1, flat).reshape(uv.shape[:-1])
        return inside & (zv > 0) & (depth <= zv + tol)

"""Photo textures in a face model's UV space: bake a photo through its fitted camera, delight,
mirror-fill, and sample textures back onto renders.

UV convention (as :mod:`facerecon.io.mesh`): ``uv (N, 2)`` per vertex, u right and v up in 0..1;
texel row ``r`` holds ``v = 1 - (r + 0.5) / T``. A model's chart is :func:`chart_uv`: the
cylindrical UV (:func:`facerecon.io.cylindrical_uv`) of its mean shape after a few smoothing
steps, which make it one-to-one (bfm-lite's raw mean shape folds triangles over in UV space,
around the nostrils; every texel must hold one surface point).

Baking (:func:`bake_photo`), per texel of the model's UV chart:

1. the texel's surface point (triangle + barycentrics of the UV-space rasterization) on the
   *fitted* mesh is projected through the fitted camera into the 224 crop and mapped to the
   full-resolution photo (the crop transform), where the colour is sampled bilinearly;
2. it is *visible* when the crop's z-buffer holds the same surface there (depth within
   ``depth_tol``), and it is weighted by ``max(0, n . view)`` so that texels seen at grazing
   angles count less; triangles folded against their neighbours
   (:func:`facerecon.morphable.mesh.folded_triangles`; none on bfm-lite's mean shape since its
   v2 triangulation) get weight 0;
3. *delighting* divides by the fitted SH irradiance at the texel (clamped below at
   ``min_shading``), so the texture is albedo rather than a photo of the lighting.

:func:`fill_texture` completes it: texels the photo could not see take the colour of their
mirror texel (the model's left/right vertex correspondence, :func:`mirror_vertices`) where that
one was seen, then the rest is inpainted (OpenCV Telea) from the known texels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from facerecon.morphable.mesh import folded_triangles
from facerecon.render import CameraConfig, interpolate, project, rasterize, transform
from facerecon.render.shading import sh_shading, vertex_normals

__all__ = [
    "BakedTexture",
    "bake_photo",
    "blend_textures",
    "chart_uv",
    "fill_texture",
    "folded_triangles",
    "mirror_vertices",
    "sample_texture",
    "texel_fragments",
    "uv_to_texel",
]


@dataclass
class BakedTexture:
    """A photo baked into UV space (``T`` texels square).

    Attributes:
        color: ``(T, T, 3)`` float32 in 0..1 (albedo when delit), valid where ``weight > 0``.
        weight: ``(T, T)`` float32 visibility x viewing-angle weight in 0..1.
        cover: ``(T, T)`` bool, texels inside the UV chart.
    """

    color: np.ndarray
    weight: np.ndarray
    cover: np.ndarray


def chart_uv(vertices: np.ndarray, triangles: np.ndarray, smooth_iters: int = 5) -> np.ndarray:
    """``(N, 2)`` one-to-one UV chart of a face mesh (module docstring).

    ``smooth_iters`` steps of ``x <- (x + mean of neighbours) / 2`` with the boundary pinned,
    then :func:`facerecon.io.cylindrical_uv` with the cylinder axis of the unsmoothed mesh.
    bfm-lite: 98 triangles flipped in UV without smoothing, none after 5 steps.
    """
    import scipy.sparse as sp

    from facerecon.io import cylindrical_uv

    v = np.asarray(vertices, np.float64)
    t = np.asarray(triangles, np.int64)
    n = len(v)
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    adj = sp.coo_matrix((np.ones(2 * len(e)), (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])),
                        shape=(n, n)).tocsr()  # fmt: skip
    adj.data[:] = 1.0
    walk = sp.diags(1.0 / np.maximum(np.asarray(adj.sum(1)).ravel(), 1.0)) @ adj
    directed = e[:, 0] * n + e[:, 1]
    pinned = np.ones(n, bool)  # the boundary, and vertices no triangle uses, keep their place
    pinned[t.ravel()] = False
    pinned[e[~np.isin(directed, e[:, 1] * n + e[:, 0]), 0]] = True
    x = v.copy()
    for _ in range(smooth_iters):
        x = 0.5 * x + 0.5 * (walk @ x)
        x[pinned] = v[pinned]
    lo, hi = v.min(axis=0), v.max(axis=0)
    return cylindrical_uv(x, axis=((lo[0] + hi[0]) / 2, hi[2] - (hi[0] - lo[0]) / 2))


def uv_to_texel(uv: torch.Tensor, size: int) -> torch.Tensor:
    """``(..., 2)`` UV (v up) -> texel coordinates ``(..., 2)`` (x = column, y = row, texel
    centres at integers)."""
    return torch.stack([uv[..., 0] * size - 0.5, (1.0 - uv[..., 1]) * size - 0.5], dim=-1)


def texel_fragments(uv: torch.Tensor, triangles: torch.Tensor, size: int):
    """Rasterize the UV chart: :class:`facerecon.render.Fragments` whose ``face_idx`` /
    ``bary`` say which surface point each texel of a ``size`` x ``size`` texture holds.

    Args:
        uv: ``(N, 2)`` per-vertex UV; triangles: ``(F, 3)``.
    """
    px = uv_to_texel(uv.to(torch.float32), size)[None]
    return rasterize(px, torch.ones(1, px.shape[1], dtype=px.dtype, device=px.device),
                     triangles, size)  # fmt: skip


def mirror_vertices(vertices: np.ndarray, triangles: np.ndarray | None = None) -> np.ndarray:
    """``(N,)`` index of each vertex's left/right partner: the vertex nearest to its mirror
    image ``(-x, y, z)`` (the models are symmetric about ``x = 0`` in model space); with
    ``triangles (F, 3)`` only vertices on the surface (used by a triangle) are partners."""
    from scipy.spatial import cKDTree

    v = np.asarray(vertices, np.float64)
    pool = np.arange(len(v)) if triangles is None else np.unique(np.asarray(triangles))
    return pool[cKDTree(v[pool]).query(v * np.array([-1.0, 1.0, 1.0]))[1]].astype(np.int64)


def bake_photo(
    photo: np.ndarray,
    vertices: torch.Tensor,
    angles: torch.Tensor,
    trans: torch.Tensor,
    gamma: torch.Tensor,
    crop_to_original: np.ndarray,
    triangles: torch.Tensor,
    uv: torch.Tensor,
    size: int = 512,
    camera: CameraConfig | None = None,
    delight: bool = True,
    exclude: np.ndarray | None = None,
    depth_tol: float = 0.02,
    min_shading: float = 0.15,
    shadow_floor: float = 0.8,
    irradiance_blur: float = 6.0,
) -> BakedTexture:
    """Bake a photo into UV space through a fitted reconstruction (module docstring).

    Args:
        photo: ``(H, W, 3)`` uint8 RGB, the full-resolution photo.
        vertices: ``(N, 3)`` mm model space (the fitted shape); angles ``(3,)``, trans ``(3,)``,
            gamma ``(27,)``: the fitted pose and SH lighting.
        crop_to_original: ``(2, 3)`` affine map from 224-crop pixels to photo pixels.
        triangles: ``(F, 3)``; uv: ``(N, 2)``.
        size: texture side ``T``.
        camera: the crop camera (default ``CameraConfig()``).
        delight: divide by the SH irradiance (False: the lit photo colours).
        exclude: ``(F,)`` bool triangles whose texels get weight 0 (default
            :func:`folded_triangles` of ``vertices``).
        depth_tol: visibility tolerance in scene units (0.02 = 2 mm).
        min_shading, shadow_floor: the division's irradiance floor is the larger of
            ``min_shading`` and ``shadow_floor`` x the median irradiance of the seen texels.
        irradiance_blur: Gaussian sigma (texels) of the irradiance before the division: the
            SH model's fine-scale shading (normals of the nose base and nostrils) is less
            reliable than its broad light direction.

    Returns:
        :class:`BakedTexture`.
    """
    cam = camera or CameraConfig()
    v = vertices.detach().to(torch.float32)[None]
    tri = triangles.to(torch.int64)
    scene = transform(v, angles.detach().float()[None], trans.detach().float()[None], cam)
    uvc, depth = project(scene, cam)  # (1, N, 2) crop pixels, (1, N)
    M = torch.as_tensor(np.asarray(crop_to_original, np.float64), dtype=torch.float32)
    uvo = uvc[0] @ M[:, :2].T + M[:, 2]
    zoom = 2  # z-buffer at twice the crop resolution
    frag_crop = rasterize(uvc * zoom + (zoom - 1) / 2.0, depth, tri, cam.size * zoom)
    normals = vertex_normals(scene, tri)
    shading = sh_shading(normals, gamma.detach().float()[None])
    attrs = torch.cat(
        [uvo[None], uvc * zoom + (zoom - 1) / 2.0, depth[..., None], normals, shading], dim=-1
    )
    chart = texel_fragments(uv, tri, size)
    tex = interpolate(attrs, chart, tri)[0]  # (T, T, 12)
    cover = chart.face_idx[0] >= 0
    xy = tex[..., 0:2].numpy().astype(np.float32)
    color = cv2.remap(
        photo.astype(np.float32) / 255.0, xy[..., 0], xy[..., 1], cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip
    S = cam.size * zoom
    cxy = tex[..., 2:4].round().long()
    inside = (cxy[..., 0] >= 0) & (cxy[..., 0] < S) & (cxy[..., 1] >= 0) & (cxy[..., 1] < S)
    cxy = cxy.clamp(0, S - 1)
    zimg = frag_crop.depth[0].reshape(S, S)
    hit = frag_crop.face_idx[0][cxy[..., 1], cxy[..., 0]] >= 0
    visible = cover & inside & hit & (tex[..., 4] <= zimg[cxy[..., 1], cxy[..., 0]] + depth_tol)
    # inside the photo too
    h, w = photo.shape[:2]
    in_photo = (xy[..., 0] >= 0) & (xy[..., 0] <= w - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= h - 1)
    facing = tex[..., 7].clamp(0, 1)  # normal z (towards the camera)
    weight = (visible.float() * facing).numpy() * in_photo
    if exclude is None:
        exclude = folded_triangles(vertices.detach().cpu().numpy(), tri.cpu().numpy())
    excl = torch.as_tensor(np.asarray(exclude, bool))
    fi = chart.face_idx[0].clamp(min=0)
    weight[(cover & excl[fi]).numpy()] = 0.0
    if delight:
        # Shadowed concavities (nostrils, mouth corners) are darker in photos than SH shading
        # says (no occlusion in the model): a floor at a fraction of the face's typical
        # irradiance keeps them dark instead of turning them into bright blotches.
        irradiance = _smooth(tex[..., 8:11].numpy(), cover.numpy(), irradiance_blur)
        lum = irradiance.mean(-1)[weight > 0]
        floor = max(min_shading, shadow_floor * float(np.median(lum))) if lum.size else 1.0
        color = np.clip(color / np.maximum(irradiance, floor), 0.0, 1.0)
    weight[~cover.numpy()] = 0.0
    return BakedTexture(color.astype(np.float32), weight.astype(np.float32), cover.numpy())


def _smooth(x: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised Gaussian blur of ``x (T, T, C)`` over ``mask`` (values outside ignored)."""
    if sigma <= 0:
        return x
    m = mask.astype(np.float32)
    num = cv2.GaussianBlur(x * m[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(m, (0, 0), sigma)[..., None]
    return np.where(den > 1e-3, num / np.maximum(den, 1e-3), x)


def blend_textures(baked: list[BakedTexture]) -> BakedTexture:
    """Several bakes of one face (image sets, views) as one: colours averaged with their
    weights, the weight the largest of them."""
    wsum = np.sum([b.weight for b in baked], axis=0)
    col = np.sum([b.color * b.weight[..., None] for b in baked], axis=0)
    col = col / np.maximum(wsum, 1e-8)[..., None]
    return BakedTexture(
        col.astype(np.float32), np.max([b.weight for b in baked], axis=0), baked[0].cover
    )


def fill_texture(
    baked: BakedTexture,
    uv: torch.Tensor,
    triangles: torch.Tensor,
    mirror: np.ndarray | None = None,
    min_weight: float = 0.05,
    prefer_mirror: float = 2.0,
    inpaint_radius: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Complete a baked texture (module docstring).

    Args:
        baked: from :func:`bake_photo` / :func:`blend_textures`.
        uv, triangles: the UV chart it was baked on.
        mirror: ``(N,)`` :func:`mirror_vertices` of the model's mean shape (None: no mirroring).
        min_weight: texels below this weight count as unseen.
        prefer_mirror: a seen texel still takes its mirror's colour when the mirror's weight
            is at least this factor larger (and >= 0.3).

    Returns:
        ``(texture (T, T, 3) uint8, source (T, T) uint8)``: 2 = seen, 1 = mirrored,
        0 = inpainted (or outside the chart).
    """
    T = baked.color.shape[0]
    seen = baked.weight >= min_weight
    out = baked.color.copy()
    source = np.where(seen, 2, 0).astype(np.uint8)
    if mirror is not None:
        chart = texel_fragments(uv, triangles, T)
        muv = interpolate(uv[mirror][None].to(torch.float32), chart, triangles)[0]
        mxy = uv_to_texel(muv, T).numpy().astype(np.float32)
        mcol = cv2.remap(baked.color, mxy[..., 0], mxy[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        mw = cv2.remap(baked.weight, mxy[..., 0], mxy[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip
        # the mirror texel wins where it was seen and this one was not, or was seen much more
        # obliquely (the far side of a turned face, where the fitted silhouette is least sure)
        better = (mw >= prefer_mirror * np.maximum(baked.weight, 1e-6)) & (mw >= 0.3)
        use = baked.cover & (mw >= min_weight) & (~seen | better)
        out[use] = mcol[use]
        source[use] = 1
    known = source > 0
    if known.any():
        out[~known] = out[known].mean(axis=0)
    img = np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)
    holes = (~known).astype(np.uint8) * 255
    if holes.any() and known.any():
        img = cv2.inpaint(img, holes, inpaint_radius, cv2.INPAINT_TELEA)
    return img, source


def sample_texture(texture: torch.Tensor, uv_pixels: torch.Tensor) -> torch.Tensor:
    """Bilinear texture lookup: ``texture (B, C, T, T)`` at per-pixel UV ``(B, H, W, 2)`` ->
    ``(B, C, H, W)`` (differentiable in both)."""
    grid = torch.stack([uv_pixels[..., 0] * 2 - 1, (1 - uv_pixels[..., 1]) * 2 - 1], dim=-1)
    return F.grid_sample(texture, grid.to(texture.dtype), mode="bilinear", align_corners=False)

"""Photo textures in a face model's UV space: bake photos through their fitted cameras, delight,
fill what no photo saw, and render textures back.

UV convention (as :mod:`facerecon.io.mesh`): ``uv (N, 2)`` per vertex, u right and v up in 0..1;
texel row ``r`` holds ``v = 1 - (r + 0.5) / T``. A model's chart is :func:`chart_uv`: the
cylindrical UV (:func:`facerecon.io.cylindrical_uv`) of its mean shape after a few smoothing
steps, which make it one-to-one (every texel holds one surface point). :class:`UVChart` holds
it with what every face of the model shares, built once per model and texture size: which
surface point each texel holds (a rasterization of the chart), each texel's mirror texel.

Baking (:func:`bake_photo`), per texel of the chart:

1. the texel's surface point on the *fitted* mesh is projected through the fitted camera into
   the 224 crop and mapped to the full-resolution photo (``crop_to_original``), where the
   colour is sampled bilinearly;
2. it is *visible* when the crop's z-buffer holds the same surface there (depth within
   ``depth_tol``), and it is weighted by ``max(0, n . view)`` so that texels seen at grazing
   angles count less; triangles folded against their neighbours
   (:func:`facerecon.morphable.mesh.folded_triangles`) get weight 0;
3. *delighting* divides by the fitted SH irradiance at the texel (smoothed, with a floor), so
   the texture is albedo rather than a photo of the lighting.

One photo cannot tell the light's colour and strength from the skin's (a fit may explain a
warm photo with the model's albedo under a warm light): the finished texture is the delit
albedo times the light's mean irradiance on the face (``gain``, per channel), i.e. the face
with the shading of the light's direction removed, in the photo's own colour balance and
exposure, which is what a viewer's lights should shine on. ``image / gain`` is the albedo
in the model's units (what :func:`render_textured` with the fitted light turns back into the
photo); the CLI stores ``gain`` as ``texture_gain`` in ``NAME.npz``.

The geometry of steps 1-3 (sample positions, visibility, weights, irradiance) is computed on a
``UVChart.work_size`` grid (512) and upsampled; the photo itself is sampled at the full texture
size, so the texture keeps the photo's resolution.

Several photos of one face (image sets, views) are averaged per texel with their squared
weights (:func:`blend_textures`). :func:`fill_texture` completes the result: texels no photo
saw take the colour of their mirror texel (the model's left/right vertex correspondence,
:func:`mirror_vertices`) where that one was seen; small unseen patches (the eyes' inner
corners, nostrils) are inpainted (OpenCV Telea); large ones take the model's albedo plus a
smooth colour offset that continues the photo texture's colours across the border (the offset
``photo - albedo`` carried inwards by OpenCV's Navier-Stokes inpainting on a ``blend_size``
grid: gradient-domain, Poisson-style blending with no seam), and texels seen only at grazing
angles fade into that fill. OpenCV's ``seamlessClone`` does not fit here: it anchors its
solution on the bounding box's border, so it cannot carry a seen region's colour outwards
(tried: the offset came out ~0). :func:`photo_texture` does all of it for a face;
:func:`render_textured` renders a texture back (image formation of
:func:`facerecon.render.render`, texture x SH irradiance).
"""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from facerecon.morphable.mesh import folded_triangles, triangle_pairs
from facerecon.render import (
    CameraConfig,
    depth_map,
    interpolate,
    project,
    rasterize,
    transform,
    visible_vertices,
)
from facerecon.render.shading import sh_shading, vertex_normals

__all__ = [
    "SOURCE_ALBEDO",
    "SOURCE_INPAINTED",
    "SOURCE_MIRRORED",
    "SOURCE_OUTSIDE",
    "SOURCE_SEEN",
    "BakedTexture",
    "FaceTexture",
    "PhotoView",
    "TexelMap",
    "TextureConfig",
    "UVChart",
    "bake_photo",
    "blend_textures",
    "chart_uv",
    "fill_texture",
    "folded_triangles",
    "mirror_vertices",
    "photo_texture",
    "render_textured",
    "sample_texture",
    "texel_fragments",
    "uv_to_texel",
]

#: :func:`fill_texture`'s ``source`` values: where each texel's colour came from.
SOURCE_OUTSIDE, SOURCE_ALBEDO, SOURCE_INPAINTED, SOURCE_MIRRORED, SOURCE_SEEN = range(5)


@dataclass
class TextureConfig:
    """How a face's photo texture is made (:func:`photo_texture`).

    Attributes:
        size: texture side ``T`` in texels (the CLI's ``--texture-size``: 512, 1024 or
            2048); 0: chosen per face by :meth:`UVChart.size_for` (as many texels as the
            photos hold pixels of the face).
        delight: divide by the fitted SH irradiance (False: the lit photo colours).
        depth_tol: visibility tolerance in scene units (0.02 = 2 mm).
        min_shading, shadow_floor: the division's irradiance floor is the larger of
            ``min_shading`` and ``shadow_floor`` x the median irradiance of the seen texels
            (shadowed concavities are darker in photos than SH shading says: a floor keeps
            them dark instead of turning them into bright blotches).
        irradiance_blur: Gaussian sigma of the irradiance before the division, in texels of a
            512 texture (the SH model's fine-scale shading is less reliable than its broad
            light direction).
        min_weight: texels seen with a smaller weight count as unseen.
        full_weight: texels seen with at least this weight keep their colour; below it they
            fade into the fill (grazing views: the fitted silhouette is least sure there).
        prefer_mirror: a seen texel takes its mirror's colour when the mirror's weight is at
            least this factor larger (and >= 0.3).
        hole_fraction: unseen patches smaller than this fraction of the chart are inpainted;
            larger ones take the model's albedo.
        inpaint_radius: OpenCV inpainting radius (texels).
        blend_size: resolution of the colour offset that blends the model's albedo in.
    """

    size: int = 0
    delight: bool = True
    depth_tol: float = 0.02
    min_shading: float = 0.15
    shadow_floor: float = 0.5
    irradiance_blur: float = 6.0
    min_weight: float = 0.05
    full_weight: float = 0.35
    prefer_mirror: float = 1.5
    hole_fraction: float = 0.002
    inpaint_radius: int = 5
    blend_size: int = 128


@dataclass
class BakedTexture:
    """A photo baked into UV space (``T`` texels square).

    Attributes:
        color: ``(T, T, 3)`` float32 in 0..1 (albedo when delit), valid where ``weight > 0``.
        weight: ``(T, T)`` float32 visibility x viewing-angle weight in 0..1.
        cover: ``(T, T)`` bool, texels inside the UV chart.
        gain: ``(3,)`` the fitted light's mean irradiance on the seen texels (the photo's
            colour balance and exposure in the model's units: ``photo ~ albedo x gain``).
    """

    color: np.ndarray
    weight: np.ndarray
    cover: np.ndarray
    gain: np.ndarray


@dataclass
class PhotoView:
    """One photo of a face with its fitted reconstruction (what :func:`bake_photo` needs).

    Attributes:
        photo: ``(H, W, 3)`` uint8 RGB, the full-resolution photo.
        vertices: ``(N, 3)`` mm model space, the fitted shape.
        angles: ``(3,)``; trans: ``(3,)``; gamma: ``(27,)``: the fitted pose and light.
        crop_to_original: ``(2, 3)`` affine map from 224-crop pixels to photo pixels.
    """

    photo: np.ndarray
    vertices: np.ndarray
    angles: np.ndarray
    trans: np.ndarray
    gamma: np.ndarray
    crop_to_original: np.ndarray


@dataclass
class FaceTexture:
    """A face's finished texture (:func:`photo_texture`).

    Attributes:
        image: ``(T, T, 3)`` uint8 RGB: the delit albedo times ``gain`` (module docstring).
        source: ``(T, T)`` uint8, where each texel came from (``SOURCE_*``).
        seen: fraction of the chart's texels that a photo saw.
        gain: ``(3,)`` the photo(s)' colour balance: ``image / 255 / gain`` is the albedo that
            the fitted light turns back into the photo (:func:`render_textured`).
        seconds: time it took (bake, blend, fill).
    """

    image: np.ndarray
    source: np.ndarray
    seen: float
    gain: np.ndarray
    seconds: float


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


@dataclass
class TexelMap:
    """Which surface point each texel of a ``size`` x ``size`` texture holds: the ``K``
    texels inside the chart and a ring of texels around it (``RING`` wide), which take the
    triangle of their nearest chart texel with extrapolated barycentrics, so that maps built
    from them can be resampled up to the chart's edge without pulling in the outside.

    Attributes:
        size: texture side ``S``.
        cover: ``(S, S)`` bool, texels inside the chart.
        pix: ``(K,)`` int64 flat texel index ``row * S + col``.
        inside: ``(K,)`` bool, the texel is inside the chart (False: the ring).
        face: ``(K,)`` int64 triangle; corners ``(K, 3)`` int64 its vertices; bary ``(K, 3)``
            float32 barycentrics (linear in UV).
    """

    size: int
    cover: np.ndarray
    pix: torch.Tensor
    inside: torch.Tensor
    face: torch.Tensor
    corners: torch.Tensor
    bary: torch.Tensor

    RING = 2

    def interpolate(self, attrs: torch.Tensor) -> torch.Tensor:
        """Per-vertex ``attrs (N, C)`` at the texels: ``(K, C)``."""
        bary = self.bary.to(attrs.dtype)
        out = attrs.index_select(0, self.corners[:, 0]) * bary[:, 0:1]
        for j in (1, 2):  # corner by corner: 1.7x faster than one einsum over (K, 3, C)
            out.addcmul_(attrs.index_select(0, self.corners[:, j]), bary[:, j : j + 1])
        return out

    def image(self, values: torch.Tensor | np.ndarray, fill: float | np.ndarray = 0.0):
        """Texel values ``(K, C)`` as an image ``(S, S, C)`` float32 (``fill``, a number or
        ``(C,)``, beyond the ring)."""
        vals = torch.as_tensor(values).to(torch.float32)
        out = torch.empty((self.size * self.size, vals.shape[-1]), dtype=torch.float32)
        out[:] = torch.as_tensor(np.asarray(fill, np.float32))
        out.index_copy_(0, self.pix, vals)
        return out.view(self.size, self.size, -1).numpy()

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The map as numpy arrays, named ``prefix + field`` (:meth:`from_arrays` reads them
        back)."""
        return {
            f"{prefix}cover": self.cover,
            f"{prefix}pix": self.pix.numpy().astype(np.int32),
            f"{prefix}inside": self.inside.numpy(),
            f"{prefix}face": self.face.numpy().astype(np.int32),
            f"{prefix}bary": self.bary.numpy(),
        }

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], triangles: np.ndarray, prefix: str = ""
    ) -> TexelMap:
        """The map :meth:`arrays` wrote (with ``prefix``), on the chart's ``triangles (F, 3)``."""
        cover = np.asarray(arrays[f"{prefix}cover"], bool)
        face = torch.from_numpy(np.asarray(arrays[f"{prefix}face"], np.int64))
        tri = torch.from_numpy(np.asarray(triangles, np.int64))
        pix = torch.from_numpy(np.asarray(arrays[f"{prefix}pix"], np.int64))
        inside = torch.from_numpy(np.asarray(arrays[f"{prefix}inside"], bool))
        bary = torch.from_numpy(np.asarray(arrays[f"{prefix}bary"], np.float32))
        return cls(cover.shape[0], cover, pix, inside, face, tri.index_select(0, face), bary)

    @classmethod
    def of_chart(cls, uv: np.ndarray, triangles: np.ndarray, size: int) -> TexelMap:
        """Rasterize the chart ``uv (N, 2)`` / ``triangles (F, 3)`` at ``size`` (module
        docstring), with the ring."""
        from scipy.ndimage import distance_transform_edt

        tri = torch.from_numpy(np.asarray(triangles, np.int64))
        with torch.no_grad():
            frag = texel_fragments(torch.from_numpy(uv).to(torch.float32), tri, size)
        flat = frag.face_idx[0].reshape(-1)
        cover = (flat >= 0).view(size, size).numpy()
        pix_in = (flat >= 0).nonzero().squeeze(1)
        bary_in = frag.bary[0].reshape(-1, 3).index_select(0, pix_in).to(torch.float32)
        dist, (iy, ix) = distance_transform_edt(~cover, return_indices=True)
        ring = ~cover & (dist <= cls.RING)
        pix_ring = np.flatnonzero(ring)
        face_ring = flat.numpy()[(iy * size + ix).ravel()[pix_ring]]
        corners = uv_to_texel(torch.from_numpy(uv[triangles[face_ring]]), size).numpy()
        p = np.stack([pix_ring % size, pix_ring // size], axis=1).astype(np.float64)
        a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
        v0, v1, v2 = b - a, c - a, p - a
        den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
        den = np.where(np.abs(den) > 1e-12, den, 1e-12)
        w1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
        w2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
        bary_ring = torch.from_numpy(np.stack([1 - w1 - w2, w1, w2], 1).astype(np.float32))
        pix = torch.cat([pix_in, torch.from_numpy(pix_ring)])
        face = torch.cat([flat.index_select(0, pix_in), torch.from_numpy(face_ring)])
        inside = torch.zeros(len(pix), dtype=torch.bool)
        inside[: len(pix_in)] = True
        return cls(size, cover, pix, inside, face, tri.index_select(0, face),
                   torch.cat([bary_in, bary_ring]))  # fmt: skip


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """``(S, S, C)`` float32 -> ``(size, size, C)`` (bilinear; area when shrinking)."""
    if image.shape[0] == size:
        return image
    mode = cv2.INTER_AREA if size < image.shape[0] else cv2.INTER_LINEAR
    out = cv2.resize(image, (size, size), interpolation=mode)
    return out.reshape(size, size, -1)


class UVChart:
    """A face model's UV chart and what every face of the model shares (built once per model
    and texture size, then cached): :class:`TexelMap` rasterizations, the mirror texel map.

    Args:
        mean_shape: ``(N, 3)`` mm; triangles: ``(F, 3)``.
        work_size: resolution of the texel geometry (visibility, weights, irradiance, vertex
            colours); larger textures are upsampled from it (:mod:`facerecon.texture`).
    """

    def __init__(
        self,
        mean_shape: np.ndarray,
        triangles: np.ndarray,
        work_size: int = 512,
        *,
        uv: np.ndarray | None = None,
        mirror: np.ndarray | None = None,
    ):
        mean = np.asarray(mean_shape, np.float64)
        self.triangles = np.asarray(triangles, np.int64)
        # one tensor view of the triangles for every bake and raster of the chart: the
        # normals' incidence matrices are kept per triangle tensor (facerecon.memo), so a new
        # tensor per face rebuilt them (~30 ms a face)
        self.triangles_tensor = torch.from_numpy(self.triangles)
        self.mean_shape = mean
        # uv / mirror: as chart_uv / mirror_vertices computed them (a cached chart)
        self.uv = chart_uv(mean, self.triangles) if uv is None else np.asarray(uv, np.float64)
        if mirror is None:
            mirror = mirror_vertices(mean, self.triangles)
        self.mirror = np.asarray(mirror, np.int64)  # (N,)
        self.work_size = int(work_size)
        self.pairs = triangle_pairs(self.triangles)  # for folded_triangles of each fitted mesh
        self._maps: dict[int, TexelMap] = {}
        self._cover: dict[int, np.ndarray] = {}
        self._mirror_xy: dict[int, np.ndarray] = {}
        self._mirror_maps: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._crop_area: float | None = None

    #: bump when chart_uv, mirror_vertices, TexelMap.of_chart or crop_area change: charts
    #: cached by an older version are then rebuilt
    CACHE_VERSION = 2

    @classmethod
    def of_model(
        cls, model, work_size: int = 512, cache: str | os.PathLike | None = None
    ) -> UVChart:
        """The chart of a :class:`facerecon.morphable.MorphableModel`.

        With ``cache`` (a folder) what the chart costs to build (~0.5 s on 2 CPU cores: the UV
        smoothing, mirror pairs, the work grid's rasterization, :meth:`crop_area`) is kept
        there on first use, under a digest of the mean shape, triangles, work size and
        :attr:`CACHE_VERSION`, and read back afterwards (~20 ms). A cache that cannot be read
        is rebuilt; one that cannot be written is skipped."""
        mean = model.mean_shape.detach().cpu().numpy().astype(np.float64)
        tri = model.triangles.cpu().numpy().astype(np.int64)
        if cache is None:
            return cls(mean, tri, work_size)
        import hashlib

        h = hashlib.blake2b(digest_size=12)
        for part in (mean.tobytes(), tri.tobytes(), f"{work_size}/{cls.CACHE_VERSION}".encode()):
            h.update(part)
        path = Path(cache) / f"uvchart-{h.hexdigest()}.npz"
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            chart = cls(mean, tri, work_size, uv=arrays["uv"], mirror=arrays["mirror"])
            for size in chart.cached_sizes():
                chart._maps[size] = TexelMap.from_arrays(arrays, tri, prefix=f"texel{size}_")
            chart._crop_area = float(arrays["crop_area"])
            return chart
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            pass  # not cached yet (or unreadable): built and stored below
        chart = cls(mean, tri, work_size)
        arrays = {"uv": chart.uv, "mirror": chart.mirror, "crop_area": chart.crop_area()}
        for size in chart.cached_sizes():
            arrays.update(chart.texels(size).arrays(prefix=f"texel{size}_"))
        try:
            from facerecon.fileio import atomic_savez

            atomic_savez(path, arrays)
        except OSError:
            pass  # a read-only cache: the chart is built again next run
        return chart

    def work(self, size: int) -> int:
        """The geometry resolution used for a ``size`` texture."""
        return min(int(size), self.work_size)

    def coarse(self, size: int) -> int:
        """The resolution of a ``size`` texture's irradiance (smooth: a quarter of the work
        grid)."""
        return max(self.work(size) // 4, 16)

    def cached_sizes(self) -> tuple[int, ...]:
        """The :class:`TexelMap` sizes a cached chart keeps: the work grid and its quarter
        (what every texture of at least :attr:`work_size` texels uses)."""
        return (self.work_size, self.coarse(self.work_size))

    #: the texture sides :meth:`size_for` chooses from
    SIZES = (512, 1024, 2048)
    #: a photo sees about 55-80 % of the chart (BENCHMARKS.md "Photo texture"): the chart holds
    #: this many texels per face pixel so that the seen part has one per photo pixel
    OVERSAMPLE = 1.5

    def crop_area(self) -> float:
        """Pixels the model's mean face covers in the aligned crop (``CameraConfig()``), seen
        from the front (the fitted faces of a crop cover this give or take 15 %). Computed
        once."""
        if self._crop_area is None:
            cam = CameraConfig()
            v = torch.from_numpy(self.mean_shape).to(torch.float32)[None]
            zero = torch.zeros(1, 3)
            with torch.no_grad():
                uv, depth = project(transform(v, zero, zero, cam), cam)
                frag = rasterize(uv, depth, self.triangles_tensor, cam.size)
            self._crop_area = float((frag.face_idx >= 0).sum())
        return self._crop_area

    def size_for(self, crop_to_original: Sequence[np.ndarray]) -> int:
        """The texture side for a face seen in photos whose crops map to them by
        ``crop_to_original`` (one ``(2, 3)`` per photo): the smallest of :attr:`SIZES` whose
        chart holds :attr:`OVERSAMPLE` texels per pixel the face covers in the photos (summed;
        the largest size when none does). A larger texture than that only interpolates the
        photo: a 1080p photo's face of 100k pixels gets 512 (208k texels on bfm-lite's
        chart), a 24 MP portrait's 1024 or 2048."""
        pixels = sum(abs(float(np.linalg.det(np.asarray(m, np.float64)[:, :2])))
                     for m in crop_to_original) * self.crop_area()  # fmt: skip
        fraction = float(self.texels(self.work_size).cover.mean())  # of the square
        for size in self.SIZES:
            if fraction * size * size >= self.OVERSAMPLE * pixels:
                return size
        return self.SIZES[-1]

    def texels(self, size: int) -> TexelMap:
        """The :class:`TexelMap` of a ``size`` texture (rasterized once, then cached)."""
        if size not in self._maps:
            self._maps[size] = TexelMap.of_chart(self.uv, self.triangles, size)
        return self._maps[size]

    def cover(self, size: int) -> np.ndarray:
        """``(size, size)`` bool texels inside the chart (upsampled from the work grid)."""
        if size not in self._cover:
            work = self.texels(self.work(size)).cover
            self._cover[size] = _resize(work.astype(np.float32)[..., None], size)[..., 0] > 0.5
        return self._cover[size]

    def bake_colors(self, colors: np.ndarray | torch.Tensor, size: int) -> np.ndarray:
        """Per-vertex ``colors (N, 3)`` in 0..1 as a texture ``(size, size, 3)`` float32 (the
        model's albedo as a texture; the mean colour away from the chart). Cost: one
        interpolation on the cached work grid and a resize."""
        tm = self.texels(self.work(size))
        col = tm.interpolate(torch.as_tensor(np.asarray(colors, np.float32)))
        mean = col[tm.inside].mean(dim=0).numpy() if bool(tm.inside.any()) else 0.5
        return np.clip(_resize(tm.image(col, fill=mean), size), 0.0, 1.0)

    def mirror_xy(self, size: int) -> np.ndarray:
        """``(size, size, 2)`` float32 texel coordinates (x, y) of each texel's mirror texel
        (:func:`mirror_vertices` interpolated over the chart); -1 far outside the chart."""
        if size not in self._mirror_xy:
            tm = self.texels(self.work(size))
            muv = torch.from_numpy(self.uv[self.mirror]).to(torch.float32)
            xy = uv_to_texel(tm.interpolate(muv), size)
            self._mirror_xy[size] = _resize(tm.image(xy, fill=-1.0), size)
        return self._mirror_xy[size]

    def mirror_maps(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`mirror_xy` as OpenCV fixed-point maps (``cv2.remap``'s faster form)."""
        if size not in self._mirror_maps:
            xy = self.mirror_xy(size)
            self._mirror_maps[size] = cv2.convertMaps(xy[..., 0], xy[..., 1], cv2.CV_16SC2)
        return self._mirror_maps[size]

    def vertex_colors(self, texture: np.ndarray) -> np.ndarray:
        """``(N, 3)`` float in 0..1: a texture ``(T, T, 3)`` uint8 sampled at the vertices."""
        T = texture.shape[0]
        xy = uv_to_texel(torch.from_numpy(self.uv), T).numpy().astype(np.float32)
        col = cv2.remap(texture, xy[:, None, 0].copy(), xy[:, None, 1].copy(), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        return col.reshape(-1, 3).astype(np.float64) / 255.0


def bake_photo(
    photo: np.ndarray,
    vertices: torch.Tensor | np.ndarray,
    angles: torch.Tensor | np.ndarray,
    trans: torch.Tensor | np.ndarray,
    gamma: torch.Tensor | np.ndarray,
    crop_to_original: np.ndarray,
    chart: UVChart,
    size: int = 1024,
    camera: CameraConfig | None = None,
    config: TextureConfig | None = None,
    exclude: np.ndarray | None = None,
) -> BakedTexture:
    """Bake a photo into UV space through a fitted reconstruction (module docstring).

    Args:
        photo: ``(H, W, 3)`` uint8 RGB, the full-resolution photo.
        vertices: ``(N, 3)`` mm model space (the fitted shape); angles ``(3,)``, trans ``(3,)``,
            gamma ``(27,)``: the fitted pose and SH lighting.
        crop_to_original: ``(2, 3)`` affine map from 224-crop pixels to photo pixels.
        chart: the model's :class:`UVChart`.
        size: texture side ``T``.
        camera: the crop camera (default ``CameraConfig()``).
        config: :class:`TextureConfig` (its ``delight``, ``depth_tol``, shading floors and
            ``irradiance_blur``; ``size`` is the argument).
        exclude: ``(F,)`` bool triangles whose texels get weight 0 (default
            :func:`folded_triangles` of ``vertices``).

    Returns:
        :class:`BakedTexture` of side ``size``.
    """
    cfg = config or TextureConfig()
    cam = camera or CameraConfig()
    tri = chart.triangles_tensor
    v = torch.as_tensor(vertices).detach().to("cpu", torch.float32)
    pose = [torch.as_tensor(x).detach().to("cpu", torch.float32)[None] for x in (angles, trans)]
    light = torch.as_tensor(gamma).detach().to("cpu", torch.float32)[None]
    zoom = 2  # the z-buffer at twice the crop resolution
    S = cam.size * zoom
    with torch.no_grad():
        scene = transform(v[None], pose[0], pose[1], cam)
        uvc, depth = project(scene, cam)  # (1, N, 2) crop pixels, (1, N)
        M = torch.as_tensor(np.asarray(crop_to_original, np.float64), dtype=torch.float32)
        uvo = uvc[0] @ M[:, :2].T + M[:, 2]
        zc = uvc * zoom + (zoom - 1) / 2.0
        zbuf = depth_map(zc, depth, tri, S)
        normals = vertex_normals(scene, tri)
        view = torch.tensor([0.0, 0.0, cam.cam_dist]) - scene
        facing = (normals * view).sum(-1) / view.norm(dim=-1).clamp(min=1e-9)
        shading = sh_shading(normals, light)
        attrs = torch.cat([uvo, zc[0], depth[0, :, None], facing[0, :, None]], -1)
        work = chart.texels(chart.work(size))
        vals = work.interpolate(attrs)  # (K, 6)
        visible = visible_vertices(vals[None, :, 2:4], vals[None, :, 4], zbuf, cfg.depth_tol)[0]
        h, w = photo.shape[:2]
        x, y = vals[:, 0], vals[:, 1]
        in_photo = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
        weight = (visible & in_photo & work.inside).float() * vals[:, 5].clamp(0, 1)
        if exclude is None:
            exclude = folded_triangles(v.numpy(), chart.triangles, pairs=chart.pairs)
        excl = torch.as_tensor(np.asarray(exclude, bool))
        weight = weight * (~excl.index_select(0, work.face)).float()
    xy_img = _resize(work.image(vals[:, 0:2]), size)
    weight_img = _resize(work.image(weight[:, None]), size)[..., 0]
    cover = chart.cover(size)
    weight_img = np.clip(weight_img, 0.0, 1.0) * cover
    color = cv2.remap(photo, xy_img[..., 0], xy_img[..., 1], cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    color = color.astype(np.float32) * np.float32(1.0 / 255.0)
    # the irradiance is smooth: on a quarter grid (with the weights), blurred, upsampled
    coarse = chart.texels(chart.coarse(size))
    with torch.no_grad():
        irr = coarse.image(coarse.interpolate(shading[0]))
    wc = _resize(work.image(weight[:, None]), coarse.size)[..., 0] * coarse.cover
    lum = irr.mean(axis=-1)[wc > 0]
    floor = max(cfg.min_shading, cfg.shadow_floor * float(np.median(lum))) if lum.size else 1.0
    lit = np.maximum(irr, floor)
    gain = (wc.ravel() @ lit.reshape(-1, 3)) / wc.sum() if wc.sum() > 0 else np.ones(3)
    if cfg.delight:
        irr = _smooth(irr, coarse.cover, cfg.irradiance_blur * coarse.size / 512.0)
        irr = np.maximum(_resize(np.maximum(irr, floor), size), floor)
        color = np.clip(np.divide(color, irr, out=color), 0.0, 1.0, out=color)
    return BakedTexture(color, weight_img.astype(np.float32), cover, gain.astype(np.float64))


def _smooth(x: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised Gaussian blur of ``x (T, T, C)`` over ``mask`` (values outside ignored)."""
    if sigma <= 0:
        return x
    m = mask.astype(np.float32)
    num = cv2.GaussianBlur(x * m[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(m, (0, 0), sigma)[..., None]
    return np.where(den > 1e-3, num / np.maximum(den, 1e-3), x)


def blend_textures(baked: Sequence[BakedTexture]) -> BakedTexture:
    """Several bakes of one face (image sets, views) as one: colours averaged with their
    squared weights (the view that sees a texel best dominates, the hand-over between views
    stays smooth), the weight the largest of them, the gain averaged by how much each saw."""
    if len(baked) == 1:
        return baked[0]
    w2 = [b.weight * b.weight for b in baked]
    col = np.sum([b.color * w[..., None] for b, w in zip(baked, w2, strict=True)], axis=0)
    col = col / np.maximum(np.sum(w2, axis=0), 1e-8)[..., None]
    weight = np.max([b.weight for b in baked], axis=0)
    total = np.array([b.weight.sum() for b in baked])
    gain = np.average([b.gain for b in baked], axis=0, weights=total if total.sum() > 0 else None)
    return BakedTexture(col.astype(np.float32), weight, baked[0].cover, gain)


def _fill_offset(albedo: np.ndarray, image: np.ndarray, known: np.ndarray, size: int):
    """``(T, T, 3)`` float32 colour offset such that ``albedo + offset`` is ``image`` where
    ``known (T, T)`` and continues it smoothly elsewhere: the offset ``image - albedo`` on the
    known texels, carried into the unknown ones by OpenCV's Navier-Stokes inpainting, on a
    ``size`` grid (the offset is smooth), upsampled. ``albedo + offset`` keeps the albedo's
    own detail (its gradients) with the person's colour at the border: Poisson blending of
    the albedo into the photo texture, with no seam. A texture is one piece: the texels of
    the chart and those outside it (which only texture filtering reads) are filled alike."""
    T = albedo.shape[0]
    a = _resize(albedo, size)
    k = _resize(known.astype(np.float32)[..., None], size)[..., 0]
    p = _resize(image * known[..., None], size) / np.maximum(k, 1e-6)[..., None]
    inside = k < 0.5
    if not inside.any():
        return _resize(cv2.GaussianBlur(p - a, (0, 0), 1.0), T)
    if inside.all():
        mean = image[known].mean(0) - albedo[known].mean(0) if known.any() else np.zeros(3)
        return np.broadcast_to(mean.astype(np.float32), albedo.shape).copy()
    off = np.where(inside[..., None], 0.0, p - a).astype(np.float32)
    mask = inside.astype(np.uint8)
    radius = max(size // 32, 2)
    off = np.stack([cv2.inpaint(off[..., c], mask, radius, cv2.INPAINT_NS) for c in range(3)], -1)
    # softened by a texel of the coarse grid: no staircase along its mask's edge upsampled
    return _resize(cv2.GaussianBlur(off, (0, 0), 1.0), T)


def fill_texture(
    baked: BakedTexture,
    chart: UVChart,
    albedo: np.ndarray | None = None,
    config: TextureConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Complete a baked texture (module docstring).

    Args:
        baked: from :func:`bake_photo` / :func:`blend_textures`.
        chart: the :class:`UVChart` it was baked on.
        albedo: ``(T, T, 3)`` float the model's albedo as a texture
            (:meth:`UVChart.bake_colors`) for what no photo saw; None: the mean seen colour.
        config: :class:`TextureConfig` (``min_weight``, ``full_weight``, ``prefer_mirror``,
            ``hole_fraction``, ``inpaint_radius``, ``blend_size``).

    Returns:
        ``(texture (T, T, 3) float32 in 0..1, source (T, T) uint8)``: ``SOURCE_SEEN``,
        ``SOURCE_MIRRORED``, ``SOURCE_INPAINTED``, ``SOURCE_ALBEDO`` or ``SOURCE_OUTSIDE``.
    """
    cfg = config or TextureConfig()
    T = baked.color.shape[0]
    cover, w = baked.cover, baked.weight
    seen = w >= cfg.min_weight
    m1, m2 = chart.mirror_maps(T)
    mcol = cv2.remap(baked.color, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mw = cv2.remap(w, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # the mirror texel wins where it was seen and this one was not, or was seen much more
    # obliquely (the far side of a turned face, where the fitted silhouette is least sure)
    better = (mw >= cfg.prefer_mirror * np.maximum(w, 1e-6)) & (mw >= 0.3)
    use = cover & (mw >= cfg.min_weight) & (~seen | better)
    out = cv2.copyTo(mcol, use.astype(np.uint8), baked.color.copy())
    conf = np.where(use, mw, np.where(seen, w, 0.0)).astype(np.float32)
    source = np.where(use, SOURCE_MIRRORED, np.where(seen, SOURCE_SEEN, SOURCE_OUTSIDE))
    source = source.astype(np.uint8)
    known = source > 0
    if albedo is None:
        mean = out[known].mean(axis=0) if known.any() else np.full(3, 0.5, np.float32)
        albedo = np.broadcast_to(mean, out.shape).astype(np.float32)
    albedo = np.asarray(albedo, np.float32)
    # small unseen patches inside the chart (eye corners, nostrils): inpainted from around them
    # (OpenCV Telea), on a half-size grid (they are small and smooth), then upsampled
    h = max(T // 2, 1)
    unseen = (cover & ~known).astype(np.uint8) * 255
    unseen = cv2.resize(unseen, (h, h), interpolation=cv2.INTER_AREA) > 0  # any texel unseen
    n, labels, stats, _ = cv2.connectedComponentsWithStats(unseen.astype(np.uint8), 8)
    small = np.zeros(n, bool)
    small[1:] = stats[1:, cv2.CC_STAT_AREA] < cfg.hole_fraction * cover.sum() / 4
    if small.any():
        holes_h = small[labels].astype(np.uint8)
        ctx = np.where(known[..., None], out, albedo)
        ctx8 = np.round(np.clip(_resize(ctx, h), 0, 1) * 255).astype(np.uint8)
        radius = max(cfg.inpaint_radius // 2, 1)
        filled = cv2.inpaint(ctx8, holes_h, radius, cv2.INPAINT_TELEA)
        holes = cover & ~known & (_resize(holes_h[..., None].astype(np.float32), T)[..., 0] > 0)
        up = _resize(filled.astype(np.float32) * np.float32(1 / 255), T)
        out = cv2.copyTo(up, holes.astype(np.uint8), out)
        conf[holes] = 1.0
        source[holes] = SOURCE_INPAINTED
    # how far each texel keeps its own colour; the rest is the albedo with the offset
    keep = np.clip((conf - cfg.min_weight) / max(cfg.full_weight - cfg.min_weight, 1e-6), 0, 1)
    fill = _fill_offset(albedo, out, keep >= 0.5, min(cfg.blend_size, T))
    fill += albedo
    out -= fill  # final = fill + keep x (out - fill), in place
    out *= keep[..., None]
    out += fill
    source[cover & (keep < 0.5)] = SOURCE_ALBEDO
    source[~cover] = SOURCE_OUTSIDE
    return np.clip(out, 0.0, 1.0, out=out), source


def photo_texture(
    chart: UVChart,
    views: Sequence[PhotoView],
    albedo: np.ndarray,
    config: TextureConfig | None = None,
    camera: CameraConfig | None = None,
) -> FaceTexture:
    """A face's texture from its photo(s): each view baked (:func:`bake_photo`), the bakes
    blended by their weights (:func:`blend_textures`), the rest filled (:func:`fill_texture`).

    Args:
        chart: the model's :class:`UVChart`.
        views: one :class:`PhotoView` per photo of the face (image sets, ``--views``).
        albedo: ``(N, 3)`` the model's fitted albedo, for what no photo saw.
        config: :class:`TextureConfig`.
    """
    cfg = config or TextureConfig()
    start = time.perf_counter()
    if not cfg.size:
        cfg = replace(cfg, size=chart.size_for([v.crop_to_original for v in views]))
    bakes = [
        bake_photo(
            v.photo,
            v.vertices,
            v.angles,
            v.trans,
            v.gamma,
            v.crop_to_original,
            chart,
            cfg.size,
            camera,
            cfg,
        )
        for v in views
    ]
    baked = blend_textures(bakes)
    gain = baked.gain.astype(np.float32)
    fill = chart.bake_colors(albedo, cfg.size)
    if cfg.delight:  # albedo units throughout, the photo's colour balance at the end
        image, source = fill_texture(baked, chart, fill, cfg)
        image = image * gain
    else:  # photo colours: the model's albedo as the photo's light shows it
        image, source = fill_texture(baked, chart, fill * gain, cfg)
    image = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    seen = float((source[baked.cover] == SOURCE_SEEN).mean()) if baked.cover.any() else 0.0
    return FaceTexture(image, source, seen, gain.astype(np.float64), time.perf_counter() - start)


def render_textured(
    vertices: torch.Tensor,
    texture: torch.Tensor,
    uv: torch.Tensor,
    triangles: torch.Tensor,
    angles: torch.Tensor,
    trans: torch.Tensor,
    gamma: torch.Tensor,
    camera: CameraConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render a textured face with the image formation of :func:`facerecon.render.render`:
    per pixel ``texture(uv) x SH irradiance``.

    Args:
        vertices: ``(B, N, 3)`` mm; texture: ``(B, 3, T, T)`` in 0..1; uv: ``(N, 2)``;
        triangles: ``(F, 3)``; angles ``(B, 3)``, trans ``(B, 3)``, gamma ``(B, 27)``.

    Returns:
        ``(image (B, 3, S, S), face_idx (B, S, S))`` (image 0 on background, face_idx -1).
    """
    cam = camera or CameraConfig()
    tri = triangles.to(device=vertices.device, dtype=torch.int64)
    angles, trans, gamma = (x.to(vertices) for x in (angles, trans, gamma))
    scene = transform(vertices, angles, trans, cam)
    uvc, depth = project(scene, cam)
    frag = rasterize(uvc, depth, tri, cam.size, near=cam.near, far=cam.far)
    shading = sh_shading(vertex_normals(scene, tri), gamma)
    B, N = vertices.shape[:2]
    attrs = torch.cat([uv.to(vertices).expand(B, N, 2), shading], dim=-1)
    vals = interpolate(attrs, frag, tri)  # (B, S, S, 5)
    col = sample_texture(texture.to(vertices), vals[..., :2]) * vals[..., 2:].permute(0, 3, 1, 2)
    return col * frag.mask.unsqueeze(1).to(col.dtype), frag.face_idx


def sample_texture(texture: torch.Tensor, uv_pixels: torch.Tensor) -> torch.Tensor:
    """Bilinear texture lookup: ``texture (B, C, T, T)`` at per-pixel UV ``(B, H, W, 2)`` ->
    ``(B, C, H, W)`` (differentiable in both)."""
    grid = torch.stack([uv_pixels[..., 0] * 2 - 1, (1 - uv_pixels[..., 1]) * 2 - 1], dim=-1)
    return F.grid_sample(texture, grid.to(texture.dtype), mode="bilinear", align_corners=False)

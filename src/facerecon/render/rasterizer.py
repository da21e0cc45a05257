"""Differentiable triangle rasterizer in plain PyTorch (CPU and CUDA), nvdiffrast optional.

Algorithm of the ``"torch"`` backend (no Python loop over triangles or pixels):

1. *Visibility* (no gradient). Every triangle's pixel bounding box is clipped to the image; its
   candidate pixel centres are enumerated exactly (``repeat_interleave`` of the box sizes, in
   runs of at most ``_CHUNK`` candidates to bound memory; dense face meshes at 224 have ~1
   candidate per triangle). Each candidate gets its screen-space barycentrics from the three
   edge functions; inside candidates (all three >= -1e-6) get the perspective-correct depth
   ``1 / sum_i(l_i / d_i)``. A z-buffer keeps, per pixel, the minimum of the int64 key
   ``float32_bits(depth) << 32 | triangle`` via ``scatter_reduce("amin")`` (positive float32 bit
   patterns sort like the floats; ties go to the lower triangle index).
2. *Differentiable barycentrics* for covered pixels only: the winning triangle's vertices are
   gathered with autograd and the barycentrics recomputed, so gradients flow to ``uv`` and
   ``depth`` of the chosen triangle and to interpolated attributes. The choice of triangle is
   discrete: there is **no silhouette / occlusion-boundary (antialiasing) gradient**.

Conventions:

* ``uv`` are OpenCV pixel coordinates (pixel row ``r``, column ``c`` has its centre at
  ``(u=c, v=r)``); ``depth`` is positive camera depth.
* ``Fragments.bary`` are **perspective-correct** barycentrics (weights for attributes that vary
  linearly on the 3D triangle); ``Fragments.depth`` is the interpolated camera depth.
* Orientation: a triangle counter-clockwise seen from the camera in a y-up frame (outward normal
  towards the camera) has negative signed area ``(u1-u0)(v2-v0) - (u2-u0)(v1-v0)`` in the y-down
  image; ``cull_backfaces=True`` drops triangles with positive area. Default: both sides drawn.
* Triangles with a vertex nearer than ``near`` (or farther than ``far``) are dropped whole (no
  clipping); degenerate triangles (|area| < 1e-10 px^2) and non-finite ones are ignored;
  triangles partly off-screen are drawn where they are on screen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from facerecon.errors import FaceReconError

__all__ = [
    "Fragments",
    "RenderBackendError",
    "depth_map",
    "interpolate",
    "nvdiffrast_available",
    "rasterize",
]

_KEY_MAX = torch.iinfo(torch.int64).max
_INSIDE_EPS = 1e-6
_AREA_EPS = 1e-10
_CHUNK = 1 << 22  # candidate pixels per chunk of the visibility pass (bounds memory)


class RenderBackendError(FaceReconError):
    """A requested rasterizer backend is unavailable or cannot handle the request."""


@dataclass
class Fragments:
    """Per-pixel rasterization result.

    Attributes:
        face_idx: ``(B, H, W)`` int64 index of the visible triangle, ``-1`` for background.
        bary: ``(B, H, W, 3)`` perspective-correct barycentrics (0 on background).
        depth: ``(B, H, W)`` camera depth of the visible surface (0 on background).
        mask: ``(B, H, W)`` bool, pixel covered.
        pix: ``(P,)`` int64 flat indices ``b * H * W + r * W + c`` of covered pixels, or None.
        bary_packed: ``(P, 3)`` barycentrics of those pixels (what ``bary`` was scattered from),
            or None. ``interpolate`` uses the packed form when present (faster).
    """

    face_idx: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor
    pix: torch.Tensor | None = None
    bary_packed: torch.Tensor | None = None


def nvdiffrast_available() -> bool:
    """True when ``nvdiffrast.torch`` can be imported."""
    try:
        import nvdiffrast.torch  # noqa: F401
    except Exception:
        return False
    return True


def rasterize(
    uv: torch.Tensor,
    depth: torch.Tensor,
    triangles: torch.Tensor,
    size: tuple[int, int] | int = (224, 224),
    cull_backfaces: bool = False,
    near: float = 1e-6,
    far: float = float("inf"),
    backend: str = "torch",
) -> Fragments:
    """Rasterize projected triangle meshes with a z-buffer.

    Args:
        uv: ``(B, N, 2)`` vertex pixel coordinates (OpenCV pixel centres).
        depth: ``(B, N)`` positive camera depth of the vertices.
        triangles: ``(F, 3)`` int64 vertex indices shared by the batch.
        size: ``(H, W)`` or a single int for a square image.
        cull_backfaces: drop triangles facing away from the camera (see module docstring).
        near: triangles with any vertex depth ``<= near`` are dropped.
        far: triangles with any vertex depth ``> far`` are dropped.
        backend: ``"torch"`` (default, any device), ``"nvdiffrast"`` (CUDA, needs the package and
            no culling) or ``"auto"`` (nvdiffrast when it is importable, the tensors are on CUDA
            and no culling is asked; else torch).

    Returns:
        :class:`Fragments`; ``bary`` and ``depth`` carry gradients to ``uv`` and ``depth``.
    """
    H, W = _checked_size(uv, depth, size, "rasterize")
    if backend not in ("torch", "nvdiffrast", "auto"):
        raise RenderBackendError(f"unknown rasterizer backend {backend!r}")
    if backend == "auto":
        use_nv = uv.is_cuda and not cull_backfaces and nvdiffrast_available()
        backend = "nvdiffrast" if use_nv else "torch"
    if backend == "nvdiffrast":
        if not nvdiffrast_available():
            raise RenderBackendError("nvdiffrast backend requested but nvdiffrast is not installed")
        if not uv.is_cuda:
            raise RenderBackendError("nvdiffrast backend needs CUDA tensors")
        if cull_backfaces:
            raise RenderBackendError("nvdiffrast backend does not cull back faces; use 'torch'")
        return _rasterize_nvdiffrast(uv, depth, triangles, H, W, near, far)
    triangles = triangles.to(device=uv.device, dtype=torch.int64)
    face_flat = _winners(_zbuffer(uv, depth, triangles, H, W, cull_backfaces, near, far))
    return _fragments(uv, depth, triangles, face_flat, H, W)


def depth_map(
    uv: torch.Tensor,
    depth: torch.Tensor,
    triangles: torch.Tensor,
    size: tuple[int, int] | int = (224, 224),
    near: float = 1e-6,
    far: float = float("inf"),
) -> torch.Tensor:
    """The z-buffer alone: what :func:`rasterize` puts in ``Fragments.depth`` (the nearest
    surface's perspective-correct camera depth at each pixel centre, equal to float rounding),
    without the fragments' barycentrics and gradient path: the input of a visibility test
    (:func:`facerecon.render.visible_vertices`) at about 3/4 of the cost. Torch backend.

    Args:
        uv, depth, triangles, size, near, far: as :func:`rasterize`.

    Returns:
        ``(B, H, W)`` depth, 0 on background (no gradient).
    """
    H, W = _checked_size(uv, depth, size, "depth_map")
    triangles = triangles.to(device=uv.device, dtype=torch.int64)
    keys = _zbuffer(uv, depth, triangles, H, W, False, near, far)
    # a key is (float32 bits of the depth) << 32 | triangle: the upper half is the depth
    z = (keys >> 32).to(torch.int32).view(torch.float32).to(depth.dtype)
    z = torch.where(keys != _KEY_MAX, z, torch.zeros_like(z))
    return z.view(uv.shape[0], H, W)


def _checked_size(
    uv: torch.Tensor, depth: torch.Tensor, size: tuple[int, int] | int, caller: str
) -> tuple[int, int]:
    """``(H, W)`` of ``size``, after checking ``uv (B, N, 2)`` and ``depth (B, N)``."""
    if uv.dim() != 3 or uv.shape[-1] != 2 or depth.shape != uv.shape[:2]:
        raise RenderBackendError(
            f"{caller} expects uv (B,N,2) and depth (B,N), got {tuple(uv.shape)} and "
            f"{tuple(depth.shape)}"
        )
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _winners(keys: torch.Tensor) -> torch.Tensor:
    """:func:`_zbuffer`'s keys ``(B * H * W,)`` as the winning triangle index, ``-1`` on
    background."""
    return torch.where(keys != _KEY_MAX, keys & 0xFFFFFFFF, torch.full_like(keys, -1))


@torch.no_grad()
def _zbuffer(
    uv: torch.Tensor,
    depth: torch.Tensor,
    triangles: torch.Tensor,
    H: int,
    W: int,
    cull_backfaces: bool,
    near: float,
    far: float,
) -> torch.Tensor:
    """Z-buffer pass: ``(B * H * W,)`` int64 keys of the nearest fragment per pixel
    (``depth_bits << 32 | triangle``), ``_KEY_MAX`` on background."""
    B, N, _ = uv.shape
    F = triangles.shape[0]
    dev = uv.device
    cdt = torch.float64 if uv.dtype == torch.float64 else torch.float32
    zbuf = torch.full((B * H * W,), _KEY_MAX, dtype=torch.int64, device=dev)
    if F == 0:
        return zbuf
    # Structure of arrays G[coord, corner, b * F + f] with coord = (u, v, depth), contiguous.
    uvd = torch.cat([uv.detach(), depth.detach().unsqueeze(-1)], dim=-1).to(cdt)
    uvd = uvd.reshape(B * N, 3).t().contiguous()  # (3, B*N)
    offsets = torch.arange(B, device=dev).view(1, B, 1) * N
    rows = (triangles.t().unsqueeze(1) + offsets).reshape(-1)  # (3*B*F,) corner, batch, tri
    G = uvd.index_select(1, rows).view(3, 3, B * F)
    X, Y, D = G[0], G[1], G[2]  # (3, B*F) each

    big = float(max(H, W) + 2)
    bx0 = X.amin(0).clamp(-big, big).ceil_().clamp_min_(0)
    bx1 = X.amax(0).clamp(-big, big).floor_().clamp_max_(W - 1)
    by0 = Y.amin(0).clamp(-big, big).ceil_().clamp_min_(0)
    by1 = Y.amax(0).clamp(-big, big).floor_().clamp_max_(H - 1)
    area = (X[1] - X[0]) * (Y[2] - Y[0]) - (X[2] - X[0]) * (Y[1] - Y[0])
    # NaN fails every comparison; +-inf coordinates give a non-finite area.
    valid = (bx1 >= bx0) & (by1 >= by0) & (area.abs() > _AREA_EPS) & torch.isfinite(area)
    valid &= (D.amin(0) > near) & (D.amax(0) <= far)
    if cull_backfaces:
        valid &= area < 0
    bw = bx1 - bx0 + 1
    cnt = torch.where(valid, bw * (by1 - by0 + 1), torch.zeros_like(bw)).long()
    ends = torch.cumsum(cnt, 0)
    start, BF = 0, B * F
    G9 = G.view(9, BF)
    while start < BF:  # runs of triangles with at most ~_CHUNK candidates (one run usually)
        base = int(ends[start - 1]) if start > 0 else 0
        limit = torch.tensor([base + _CHUNK], device=dev, dtype=ends.dtype)
        stop = min(max(int(torch.searchsorted(ends, limit, right=True)[0]), start + 1), BF)
        sl = slice(start, stop)
        _scatter_candidates(zbuf, cnt[sl], bw[sl], bx0[sl], by0[sl], G9, start, F, H, W)
        start = stop
    return zbuf


def _scatter_candidates(
    zbuf: torch.Tensor,
    cnt: torch.Tensor,
    bw: torch.Tensor,
    bx0: torch.Tensor,
    by0: torch.Tensor,
    G9: torch.Tensor,
    first: int,
    F: int,
    H: int,
    W: int,
) -> None:
    """Test the bounding-box pixels of a run of triangles and min-reduce their keys.

    Args:
        zbuf: ``(B*H*W,)`` int64 z-buffer of packed keys, updated in place.
        cnt: ``(K,)`` candidate pixels per triangle (0 for dropped ones); bw: box widths;
        bx0, by0: ``(K,)`` box origins (column, row) as floats.
        G9: ``(9, B*F)`` (u, v, depth) x corner rows for all triangles.
        first: flat ``b * F + f`` index of the run's first triangle.
    """
    dev = zbuf.device
    M = int(cnt.sum())
    if M == 0:
        return
    owner = torch.repeat_interleave(cnt, output_size=M)  # (M,) triangle of each candidate
    local = torch.arange(M, device=dev) - (torch.cumsum(cnt, 0) - cnt).index_select(0, owner)
    w = bw.long().index_select(0, owner)
    dy = torch.div(local, w, rounding_mode="floor")
    px = bx0.long().index_select(0, owner) + (local - dy * w)
    py = by0.long().index_select(0, owner) + dy
    tri = owner + first  # flat b * F + f
    g = G9.index_select(1, tri).view(3, 3, M)
    X, Y, D = g[0], g[1], g[2]
    fx, fy = px.to(X.dtype), py.to(X.dtype)
    X1, X2 = X[[1, 2, 0]], X[[2, 0, 1]]
    Y1, Y2 = Y[[1, 2, 0]], Y[[2, 0, 1]]
    E = (X2 - X1) * (fy - Y1) - (Y2 - Y1) * (fx - X1)  # edge functions, (3, M)
    lam = E / E.sum(0)  # screen-space barycentrics (the three edge functions sum to the area)
    invz = (lam / D).sum(0)
    inside = (lam.amin(0) >= -_INSIDE_EPS) & (invz > 0)
    z = invz.clamp_min(1e-30).reciprocal().to(torch.float32)
    b = torch.div(tri, F, rounding_mode="floor")
    key = (z.view(torch.int32).to(torch.int64) << 32) | (tri - b * F)
    key = torch.where(inside, key, torch.full_like(key, _KEY_MAX))
    zbuf.scatter_reduce_(0, b * (H * W) + py * W + px, key, reduce="amin", include_self=True)


def _fragments(
    uv: torch.Tensor,
    depth: torch.Tensor,
    triangles: torch.Tensor,
    face_flat: torch.Tensor,
    H: int,
    W: int,
) -> Fragments:
    """Differentiable barycentrics and depth of the pixels :func:`_zbuffer` covered
    (``face_flat (B * H * W,)``), as :class:`Fragments`."""
    B, N, _ = uv.shape
    pix = (face_flat >= 0).nonzero().squeeze(1)  # (P,)
    f = face_flat.index_select(0, pix)
    b = torch.div(pix, H * W, rounding_mode="floor")
    rem = pix - b * (H * W)
    py = torch.div(rem, W, rounding_mode="floor")
    px = rem - py * W
    vid = (triangles.t().index_select(1, f) + b * N).reshape(-1)  # (3*P,) corner-major
    uvd = torch.cat([uv, depth.unsqueeze(-1)], dim=-1).reshape(B * N, 3)
    bary_p, depth_p = _PerspectiveBary.apply(uvd, vid, px.to(uv.dtype), py.to(uv.dtype))
    bary = uv.new_zeros(B * H * W, 3).index_copy(0, pix, bary_p).view(B, H, W, 3)
    zimg = depth.new_zeros(B * H * W).index_copy(0, pix, depth_p).view(B, H, W)
    return Fragments(
        face_idx=face_flat.view(B, H, W),
        bary=bary,
        depth=zimg,
        mask=(face_flat >= 0).view(B, H, W),
        pix=pix,
        bary_packed=bary_p,
    )


_NEXT = (1, 2, 0)  # corner a(i) = i + 1
_PREV = (2, 0, 1)  # corner b(i) = i + 2 = i - 1


class _PerspectiveBary(torch.autograd.Function):
    """Perspective-correct barycentrics and depth of covered pixels, with a fused backward.

    With corners ``i``, ``a = i + 1``, ``b = i + 2`` (mod 3) and the pixel centre ``p``, the edge
    functions are ``e_i = (x_b - x_a)(p_y - y_a) - (y_b - y_a)(p_x - x_a)`` (they sum to the
    signed area ``A``); screen barycentrics ``l_i = e_i / A``; ``w_i = e_i / d_i``;
    ``bary_i = w_i / sum(w)`` and ``depth = A / sum(w) = 1 / sum_i(l_i / d_i)``.
    """

    @staticmethod
    def forward(ctx, uvd: torch.Tensor, vid: torch.Tensor, px: torch.Tensor, py: torch.Tensor):
        """uvd ``(B*N, 3)`` (u, v, depth) rows; vid ``(3*P,)`` corner-major rows; px, py ``(P,)``.

        Returns bary ``(P, 3)`` and depth ``(P,)``.
        """
        g = uvd.index_select(0, vid).view(3, -1, 3)
        X, Y, D = g[..., 0], g[..., 1], g[..., 2]  # (3, P)
        Xa, Xb, Ya, Yb = X[_NEXT,], X[_PREV,], Y[_NEXT,], Y[_PREV,]
        E = (Xb - Xa) * (py - Ya) - (Yb - Ya) * (px - Xa)
        w = E / D
        s = w.sum(0)
        bary = w / s
        z = E.sum(0) / s
        ctx.save_for_backward(vid, X, Y, D, E, bary, z, s, px, py)
        ctx.n_rows = uvd.shape[0]
        return bary.t(), z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_bary: torch.Tensor, grad_z: torch.Tensor):
        vid, X, Y, D, E, bary, z, s, px, py = ctx.saved_tensors
        gb = grad_bary.t()  # (3, P)
        gw = (gb - (gb * bary).sum(0)) / s - grad_z * z / s  # dL/dw_i
        ge = gw / D + grad_z / s  # dL/de_i (the area A = sum e_i also enters the depth)
        gd = -gw * E / (D * D)
        Xa, Xb, Ya, Yb = X[_NEXT,], X[_PREV,], Y[_NEXT,], Y[_PREV,]
        # e_i depends on corners a and b; route each partial to its corner.
        gx = (ge * (Yb - py))[_PREV,] + (ge * (py - Ya))[_NEXT,]
        gy = (ge * (px - Xb))[_PREV,] + (ge * (Xa - px))[_NEXT,]
        src = torch.stack([gx, gy, gd], dim=-1).reshape(-1, 3)
        grad_uvd = src.new_zeros(ctx.n_rows, 3).index_add_(0, vid, src)
        return grad_uvd, None, None, None


def interpolate(attrs: torch.Tensor, fragments: Fragments, triangles: torch.Tensor) -> torch.Tensor:
    """Interpolate per-vertex attributes with the fragments' barycentrics.

    Args:
        attrs: ``(B, N, C)`` per-vertex attributes.
        fragments: from :func:`rasterize`.
        triangles: ``(F, 3)`` the same triangles that were rasterized.

    Returns:
        ``(B, H, W, C)``; 0 on background. Differentiable w.r.t. ``attrs`` and the barycentrics.
    """
    B, N, C = attrs.shape
    _, H, W = fragments.face_idx.shape
    triangles = triangles.to(device=attrs.device, dtype=torch.int64)
    face_flat = fragments.face_idx.reshape(-1)
    if fragments.pix is not None and fragments.bary_packed is not None:
        pix, bary_p = fragments.pix, fragments.bary_packed
    else:
        pix = (face_flat >= 0).nonzero().squeeze(1)
        bary_p = fragments.bary.reshape(-1, 3).index_select(0, pix)
    b = torch.div(pix, H * W, rounding_mode="floor")
    f = face_flat.index_select(0, pix)
    vid = (triangles.t().index_select(1, f) + b * N).reshape(-1)  # (3*P,) corner-major
    vals = attrs.reshape(B * N, C).index_select(0, vid).view(3, -1, C)
    out_p = (vals * bary_p.to(attrs.dtype).t().unsqueeze(-1)).sum(0)
    return attrs.new_zeros(B * H * W, C).index_copy(0, pix, out_p).view(B, H, W, C)


def _rasterize_nvdiffrast(
    uv: torch.Tensor,
    depth: torch.Tensor,
    triangles: torch.Tensor,
    H: int,
    W: int,
    near: float,
    far: float,
) -> Fragments:  # pragma: no cover - needs CUDA and nvdiffrast
    """Same contract through ``nvdiffrast.torch.rasterize`` (CUDA only).

    Clip coordinates are built so that nvdiffrast's pixel centres coincide with ours and ``w`` is
    the camera depth (its barycentrics are then perspective-correct like ours).
    """
    import nvdiffrast.torch as dr

    n = max(float(near), 1e-6)
    f = float(far) if far != float("inf") else 1e6
    ndc_x = (2.0 * uv[..., 0] + 1.0) / W - 1.0
    ndc_y = (2.0 * uv[..., 1] + 1.0) / H - 1.0  # row 0 of nvdiffrast's output is ndc y = -1
    w = depth
    z_clip = w * (f + n) / (f - n) - 2.0 * f * n / (f - n)
    pos = torch.stack([ndc_x * w, ndc_y * w, z_clip, w], dim=-1).float().contiguous()
    tri = triangles.to(device=uv.device, dtype=torch.int32).contiguous()
    ctx = dr.RasterizeCudaContext(device=uv.device)
    rast, _ = dr.rasterize(ctx, pos, tri, resolution=[H, W])
    face_idx = rast[..., 3].long() - 1
    mask = face_idx >= 0
    b0, b1 = rast[..., 0], rast[..., 1]
    bary = torch.stack([b0, b1, 1.0 - b0 - b1], dim=-1) * mask.unsqueeze(-1)
    zimg, _ = dr.interpolate(depth.float().unsqueeze(-1).contiguous(), rast, tri)
    zimg = zimg[..., 0] * mask
    return Fragments(
        face_idx=face_idx,
        bary=bary.to(uv.dtype),
        depth=zimg.to(depth.dtype),
        mask=mask,
    )

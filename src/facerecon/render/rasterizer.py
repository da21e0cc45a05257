"""Differentiable triangle rasterizer in plain PyTorch (CPU and CUDA), nvdiffrast optional.

Algorithm of the ``"torch"`` backend (no Python loop over triangles or pixels):

1. *Visibility* (no gradient). Every triangle's pixel bounding box is clipped to the image; its
   candidate pixel centres are enumerated exactly (``repeat_interleave`` of the box sizes, in
   chunks that bound memory). Each candidate gets its screen-space barycentrics from the
   triangle's precomputed affine edge functions; inside candidates (all three >= -1e-6) get the
   perspective-correct depth ``1 / sum_i(l_i / d_i)``. A z-buffer keeps, per pixel, the minimum
   of the int64 key ``float32_bits(depth) << 32 | triangle`` via ``scatter_reduce("amin")``
   (positive float32 bit patterns sort like the floats; ties go to the lower triangle index).
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

__all__ = ["Fragments", "RenderBackendError", "interpolate", "nvdiffrast_available", "rasterize"]

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
    H, W = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if uv.dim() != 3 or uv.shape[-1] != 2 or depth.shape != uv.shape[:2]:
        raise RenderBackendError(
            f"rasterize expects uv (B,N,2) and depth (B,N), got {tuple(uv.shape)} and "
            f"{tuple(depth.shape)}"
        )
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
    return _rasterize_torch(uv, depth, triangles, H, W, cull_backfaces, near, far)


def _edge_coefficients(
    tx: torch.Tensor, ty: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Affine barycentric functions ``l_i(u, v) = A_i u + B_i v + C_i`` of triangles.

    Args:
        tx, ty: ``(..., 3)`` vertex coordinates.

    Returns:
        A, B, C ``(..., 3)`` (already divided by the signed area) and the signed area ``(...)``
        ``(u1-u0)(v2-v0) - (u2-u0)(v1-v0)``.
    """
    x0, x1, x2 = tx.unbind(-1)
    y0, y1, y2 = ty.unbind(-1)
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    # l0 = E(v1, v2, p) / area with E(a, b, p) = (b.x-a.x)(p.y-a.y) - (b.y-a.y)(p.x-a.x)
    A = torch.stack([y1 - y2, y2 - y0, y0 - y1], dim=-1)
    Bc = torch.stack([x2 - x1, x0 - x2, x1 - x0], dim=-1)
    C = torch.stack([x1 * y2 - x2 * y1, x2 * y0 - x0 * y2, x0 * y1 - x1 * y0], dim=-1)
    safe = torch.where(area.abs() > _AREA_EPS, area, torch.ones_like(area)).unsqueeze(-1)
    return A / safe, Bc / safe, C / safe, area


@torch.no_grad()
def _visibility(
    uv: torch.Tensor,
    depth: torch.Tensor,
    triangles: torch.Tensor,
    H: int,
    W: int,
    cull_backfaces: bool,
    near: float,
    far: float,
) -> torch.Tensor:
    """Z-buffer pass. Returns ``(B * H * W,)`` int64 winning triangle index, ``-1`` background."""
    B = uv.shape[0]
    F = triangles.shape[0]
    dev = uv.device
    cdt = torch.float64 if uv.dtype == torch.float64 else torch.float32
    tri_uv = uv.detach().to(cdt)[:, triangles]  # (B, F, 3, 2)
    tri_d = depth.detach().to(cdt)[:, triangles]  # (B, F, 3)
    tx, ty = tri_uv[..., 0], tri_uv[..., 1]
    A, Bc, C, area = _edge_coefficients(tx, ty)
    invd = 1.0 / tri_d
    # 1/depth is affine in screen space: coefficients sum_i l_i(u, v) / d_i.
    Az = (A * invd).sum(-1)
    Bz = (Bc * invd).sum(-1)
    Cz = (C * invd).sum(-1)

    big = float(max(H, W) + 2)
    x0 = torch.ceil(tx.amin(-1).clamp(-big, big)).long().clamp_min(0)
    x1 = torch.floor(tx.amax(-1).clamp(-big, big)).long().clamp_max(W - 1)
    y0 = torch.ceil(ty.amin(-1).clamp(-big, big)).long().clamp_min(0)
    y1 = torch.floor(ty.amax(-1).clamp(-big, big)).long().clamp_max(H - 1)
    valid = (x1 >= x0) & (y1 >= y0) & (area.abs() > _AREA_EPS)
    valid &= torch.isfinite(tri_uv).all(-1).all(-1) & torch.isfinite(tri_d).all(-1)
    valid &= (tri_d.amin(-1) > near) & (tri_d.amax(-1) <= far)
    if cull_backfaces:
        valid &= area < 0

    ids = valid.reshape(-1).nonzero().squeeze(1)  # indices into B*F
    zbuf = torch.full((B * H * W,), _KEY_MAX, dtype=torch.int64, device=dev)
    if ids.numel() > 0:
        bw = (x1 - x0 + 1).reshape(-1)[ids]
        bh = (y1 - y0 + 1).reshape(-1)[ids]
        cnt = bw * bh
        # Per-triangle table: 3 A, 3 B, 3 C, Az, Bz, Cz.
        table = torch.cat(
            [A, Bc, C, Az.unsqueeze(-1), Bz.unsqueeze(-1), Cz.unsqueeze(-1)], dim=-1
        ).reshape(B * F, 12)[ids]
        ox = x0.reshape(-1)[ids]
        oy = y0.reshape(-1)[ids]
        batch_of = torch.div(ids, F, rounding_mode="floor")
        tri_of = ids - batch_of * F
        pix_base = batch_of * (H * W)
        ends = torch.cumsum(cnt, 0)
        # Split the triangles into chunks of at most ~_CHUNK candidates (one chunk usually).
        start_t = 0
        K = ids.numel()
        while start_t < K:
            before = int(ends[start_t - 1]) if start_t > 0 else 0
            limit = torch.tensor([before + _CHUNK], device=dev)
            stop_t = int(torch.searchsorted(ends, limit, right=True)[0])
            stop_t = max(stop_t, start_t + 1)
            stop_t = min(stop_t, K)
            _scatter_candidates(
                zbuf,
                cnt[start_t:stop_t],
                bw[start_t:stop_t],
                ox[start_t:stop_t],
                oy[start_t:stop_t],
                table[start_t:stop_t],
                tri_of[start_t:stop_t],
                pix_base[start_t:stop_t],
                W,
            )
            start_t = stop_t
    covered = zbuf != _KEY_MAX
    return torch.where(covered, zbuf & 0xFFFFFFFF, torch.full_like(zbuf, -1))


def _scatter_candidates(
    zbuf: torch.Tensor,
    cnt: torch.Tensor,
    bw: torch.Tensor,
    ox: torch.Tensor,
    oy: torch.Tensor,
    table: torch.Tensor,
    tri_of: torch.Tensor,
    pix_base: torch.Tensor,
    W: int,
) -> None:
    """Enumerate the bounding-box pixels of a chunk of triangles and min-reduce their keys."""
    dev = zbuf.device
    K = cnt.numel()
    owner = torch.repeat_interleave(torch.arange(K, device=dev), cnt)  # (M,)
    starts = torch.cumsum(cnt, 0) - cnt
    local = torch.arange(owner.numel(), device=dev) - starts[owner]
    w = bw[owner]
    dy = torch.div(local, w, rounding_mode="floor")
    dx = local - dy * w
    px = ox[owner] + dx
    py = oy[owner] + dy
    t = table[owner]  # (M, 12)
    fx = px.to(t.dtype).unsqueeze(1)
    fy = py.to(t.dtype).unsqueeze(1)
    lam = t[:, 0:3] * fx + t[:, 3:6] * fy + t[:, 6:9]
    inside = (lam >= -_INSIDE_EPS).all(1)
    invz = t[:, 9] * fx[:, 0] + t[:, 10] * fy[:, 0] + t[:, 11]
    inside &= invz > 0
    z = (1.0 / invz.clamp_min(1e-30)).to(torch.float32)
    key = (z.view(torch.int32).to(torch.int64) << 32) | tri_of[owner]
    key = torch.where(inside, key, torch.full_like(key, _KEY_MAX))
    flat = pix_base[owner] + py * W + px
    zbuf.scatter_reduce_(0, flat, key, reduce="amin", include_self=True)


def _rasterize_torch(
    uv: torch.Tensor,
    depth: torch.Tensor,
    triangles: torch.Tensor,
    H: int,
    W: int,
    cull_backfaces: bool,
    near: float,
    far: float,
) -> Fragments:
    B, N, _ = uv.shape
    triangles = triangles.to(device=uv.device, dtype=torch.int64)
    face_flat = _visibility(uv, depth, triangles, H, W, cull_backfaces, near, far)
    pix = (face_flat >= 0).nonzero().squeeze(1)  # (P,)
    f = face_flat[pix]
    b = torch.div(pix, H * W, rounding_mode="floor")
    rem = pix - b * (H * W)
    py = torch.div(rem, W, rounding_mode="floor")
    px = rem - py * W
    gidx = (triangles[f] + (b * N).unsqueeze(1)).reshape(-1)  # (P*3,)
    vuv = uv.reshape(B * N, 2).index_select(0, gidx).view(-1, 3, 2)
    vd = depth.reshape(B * N).index_select(0, gidx).view(-1, 3)
    bary_p, depth_p = _perspective_bary(vuv, vd, px.to(uv.dtype), py.to(uv.dtype))
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


def _perspective_bary(
    vuv: torch.Tensor, vd: torch.Tensor, px: torch.Tensor, py: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable perspective-correct barycentrics and depth at pixel centres.

    Args:
        vuv: ``(P, 3, 2)`` triangle vertex pixels; vd: ``(P, 3)`` their depths;
        px, py: ``(P,)`` pixel centres.

    Returns:
        bary ``(P, 3)`` with ``b_i = (l_i / d_i) / sum_j (l_j / d_j)``, depth ``(P,)``
        ``1 / sum_j (l_j / d_j)`` where ``l`` are the screen-space barycentrics.
    """
    tx, ty = vuv[..., 0], vuv[..., 1]
    x0, x1, x2 = tx.unbind(-1)
    y0, y1, y2 = ty.unbind(-1)
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    e0 = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
    e1 = (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)
    e2 = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
    lam = torch.stack([e0, e1, e2], dim=-1) / area.unsqueeze(-1)
    w = lam / vd
    s = w.sum(-1, keepdim=True)
    return w / s, 1.0 / s.squeeze(-1)


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
    gidx = (triangles[face_flat[pix]] + (b * N).unsqueeze(1)).reshape(-1)
    vals = attrs.reshape(B * N, C).index_select(0, gidx).view(-1, 3, C)
    out_p = (vals * bary_p.to(attrs.dtype).unsqueeze(-1)).sum(1)
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

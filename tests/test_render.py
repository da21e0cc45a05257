"""Tests of facerecon.render: camera, SH shading, rasterizer (z-buffer, gradients), renderer."""

from __future__ import annotations

import math

import pytest
import torch

from facerecon.errors import FaceReconError
from facerecon.render import (
    CameraConfig,
    Fragments,
    RenderBackendError,
    depth_map,
    euler_to_matrix,
    interpolate,
    nvdiffrast_available,
    project,
    rasterize,
    render,
    render_attributes,
    sh_basis,
    sh_shading,
    transform,
    vertex_normals,
)

# ----------------------------------------------------------------------------- helpers


def uv_sphere(n_lat: int, n_lon: int, radius: float = 1.0, dtype=torch.float64):
    """Closed UV sphere, triangles counter-clockwise seen from outside."""
    th = torch.linspace(0, math.pi, n_lat, dtype=dtype)[1:-1]
    ph = torch.linspace(0, 2 * math.pi, n_lon + 1, dtype=dtype)[:-1]
    T, P = torch.meshgrid(th, ph, indexing="ij")
    ring = torch.stack([T.sin() * P.cos(), T.sin() * P.sin(), T.cos()], -1).reshape(-1, 3)
    top = torch.tensor([[0.0, 0.0, 1.0]], dtype=dtype)
    bot = torch.tensor([[0.0, 0.0, -1.0]], dtype=dtype)
    v = torch.cat([ring, top, bot]) * radius
    R = n_lat - 2
    it, ib = R * n_lon, R * n_lon + 1
    tris = []
    for j in range(n_lon):
        j2 = (j + 1) % n_lon
        tris.append([it, j, j2])
        tris.append([ib, (R - 1) * n_lon + j2, (R - 1) * n_lon + j])
        for i in range(R - 1):
            a, b = i * n_lon + j, i * n_lon + j2
            c, d = (i + 1) * n_lon + j, (i + 1) * n_lon + j2
            tris += [[a, c, b], [b, c, d]]
    return v, torch.tensor(tris, dtype=torch.int64)


def brute_force(uv, depth, tris, H, W, cull=False, near=1e-6):
    """Per-pixel, per-triangle reference z-buffer in float64 (slow, tiny meshes only)."""
    B = uv.shape[0]
    face = torch.full((B, H, W), -1, dtype=torch.int64)
    zbuf = torch.zeros(B, H, W, dtype=torch.float64)
    for b in range(B):
        for r in range(H):
            for c in range(W):
                best, best_f = math.inf, -1
                for f, (i0, i1, i2) in enumerate(tris.tolist()):
                    (x0, y0), (x1, y1), (x2, y2) = (uv[b, i].tolist() for i in (i0, i1, i2))
                    d = [depth[b, i].item() for i in (i0, i1, i2)]
                    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
                    if abs(area) < 1e-10 or min(d) <= near or (cull and area > 0):
                        continue
                    l0 = ((x2 - x1) * (r - y1) - (y2 - y1) * (c - x1)) / area
                    l1 = ((x0 - x2) * (r - y2) - (y0 - y2) * (c - x2)) / area
                    l2 = 1.0 - l0 - l1
                    if min(l0, l1, l2) < -1e-9:
                        continue
                    z = 1.0 / (l0 / d[0] + l1 / d[1] + l2 / d[2])
                    if z < best:
                        best, best_f = z, f
                if best_f >= 0:
                    face[b, r, c] = best_f
                    zbuf[b, r, c] = best
    return face, zbuf


def random_mesh(seed, B=2, N=30, F=40, H=20, W=28):
    g = torch.Generator().manual_seed(seed)
    uv = torch.rand(B, N, 2, generator=g, dtype=torch.float64)
    uv[..., 0] = uv[..., 0] * (W + 16) - 8  # some vertices off-screen
    uv[..., 1] = uv[..., 1] * (H + 16) - 8
    depth = 2.0 + 6.0 * torch.rand(B, N, generator=g, dtype=torch.float64)
    tris = torch.randint(0, N, (F, 3), generator=g)
    tris[0] = torch.tensor([3, 3, 5])  # degenerate (repeated vertex)
    depth[:, 7] = -1.0  # vertex behind the camera: its triangles are dropped
    return uv, depth, tris


# ----------------------------------------------------------------------------- camera


def test_euler_matrix_orthonormal_and_order():
    g = torch.Generator().manual_seed(0)
    angles = (torch.rand(5, 3, generator=g, dtype=torch.float64) - 0.5) * 3.0
    R = euler_to_matrix(angles)
    eye = torch.eye(3, dtype=torch.float64).expand(5, 3, 3)
    assert torch.allclose(R @ R.transpose(1, 2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(5, dtype=torch.float64), atol=1e-12)

    def axis(a, i):
        c, s = math.cos(a), math.sin(a)
        m = torch.eye(3, dtype=torch.float64)
        j, k = [(1, 2), (2, 0), (0, 1)][i]
        m[j, j], m[j, k], m[k, j], m[k, k] = c, -s, s, c
        return m

    for b in range(5):
        x, y, z = angles[b].tolist()
        ref = axis(z, 2) @ axis(y, 1) @ axis(x, 0)
        assert torch.allclose(R[b], ref, atol=1e-12)
    # A positive rotation about y (yaw) brings +x towards -z: R @ e_x for angle pi/2 = -e_z.
    Ry = euler_to_matrix(torch.tensor([[0.0, math.pi / 2, 0.0]], dtype=torch.float64))[0]
    assert torch.allclose(
        Ry @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
        torch.tensor([0.0, 0, -1], dtype=torch.float64),
        atol=1e-12,
    )


def test_transform_and_project_known_points():
    cam = CameraConfig()
    pts_mm = torch.tensor([[[0.0, 0.0, 0.0], [10.0, 20.0, 0.0], [0.0, 0.0, 500.0]]])
    scene = transform(pts_mm, torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 0.0]]), cam)
    assert torch.allclose(scene[0, 1], torch.tensor([0.1, 0.2, 0.0]))
    uv, d = project(scene, cam)
    assert torch.allclose(uv[0, 0], torch.tensor([112.0, 112.0]))
    # u = 112 + 1015 * 0.1 / 10, v = 112 - 1015 * 0.2 / 10 (image y down)
    assert torch.allclose(uv[0, 1], torch.tensor([122.15, 91.7]), atol=1e-4)
    assert torch.allclose(d[0], torch.tensor([10.0, 10.0, 5.0]))
    # rotation then translation, p @ R^T + t
    ang = torch.tensor([[0.0, 0.0, math.pi / 2]])
    s2 = transform(torch.tensor([[[100.0, 0.0, 0.0]]]), ang, torch.tensor([[0.0, 0.0, 1.0]]), cam)
    assert torch.allclose(s2[0, 0], torch.tensor([0.0, 1.0, 1.0]), atol=1e-6)
    # face width: 150 mm at the origin is ~152 px
    w = project(
        transform(
            torch.tensor([[[-75.0, 0, 0], [75.0, 0, 0]]]), torch.zeros(1, 3), torch.zeros(1, 3)
        )
    )[0]
    assert abs((w[0, 1, 0] - w[0, 0, 0]).item() - 152.25) < 1e-3


def test_camera_scaled_maps_pixels_proportionally():
    cam = CameraConfig()
    small = cam.scaled(112)
    assert (small.size, small.focal, small.center) == (112, 507.5, 56.0)
    scene = torch.tensor([[[0.3, -0.2, 0.4], [-0.5, 0.6, -0.1]]], dtype=torch.float64)
    uv224, _ = project(scene, cam)
    uv112, _ = project(scene, small)
    assert torch.allclose(uv112, uv224 * 0.5, atol=1e-12)


# ----------------------------------------------------------------------------- shading


def test_vertex_normals_outward_on_sphere():
    v, t = uv_sphere(24, 48)
    n = vertex_normals(v[None], t)[0]
    assert torch.allclose(n.norm(dim=-1), torch.ones(len(v), dtype=torch.float64), atol=1e-12)
    cos = (n * v).sum(-1)  # v is already unit length
    assert cos.min() > 0.995
    # reversing the winding flips the normals
    n_rev = vertex_normals(v[None], t.flip(1))[0]
    assert torch.allclose(n_rev, -n, atol=1e-12)


def test_sh_basis_constants_and_orthogonality():
    # Fibonacci-sphere quadrature of unit normals.
    M = 20000
    i = torch.arange(M, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / M
    phi = math.pi * (1 + 5**0.5) * i
    r = (1 - z * z).sqrt()
    n = torch.stack([r * phi.cos(), r * phi.sin(), z], -1)
    Y = sh_basis(n)
    a = torch.tensor(
        [math.pi] + [2 * math.pi / 3**0.5] * 3 + [2 * math.pi / 8**0.5] * 5, dtype=torch.float64
    )
    Yn = Y / a  # remove the Lambertian factors: real orthonormal SH up to sign
    gram = Yn.T @ Yn * (4 * math.pi / M)
    assert torch.allclose(gram, torch.eye(9, dtype=torch.float64), atol=2e-3)
    # signs of the released code: Y1 = -k1 y, Y2 = +k1 z, Y3 = -k1 x, Y4 = +k2 xy
    e = torch.eye(3, dtype=torch.float64)
    k1 = math.sqrt(math.pi)  # a1 c1 = 2 pi / sqrt 3 * sqrt 3 / sqrt(4 pi)
    assert torch.allclose(
        sh_basis(e)[:, 1:4],
        torch.tensor([[0, 0, -k1], [-k1, 0, 0], [0, k1, 0]], dtype=torch.float64),
        atol=1e-12,
    )
    d = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64) / 2**0.5
    k2 = 2 * math.pi / 8**0.5 * 3 * 5**0.5 / (12 * math.pi) ** 0.5
    assert abs(sh_basis(d)[0, 4].item() - 0.5 * k2) < 1e-12


def test_sh_shading_ambient_offset_and_channels():
    n = torch.tensor([[[0.0, 0.0, 1.0], [0.6, 0.0, 0.8]]], dtype=torch.float64)
    zero = sh_shading(n, torch.zeros(1, 27, dtype=torch.float64))
    # ambient only: 0.8 * pi / sqrt(4 pi) = 0.8 * sqrt(pi) / 2
    assert torch.allclose(zero, torch.full_like(zero, 0.4 * math.sqrt(math.pi)), atol=1e-12)
    g = torch.zeros(1, 3, 9, dtype=torch.float64)
    g[0, 1, 2] = 1.0  # green channel, +z term
    sh = sh_shading(n, g.reshape(1, 27))
    base = 0.4 * math.sqrt(math.pi)
    assert torch.allclose(sh[0, :, 0], torch.full((2,), base, dtype=torch.float64))
    assert torch.allclose(sh[0, :, 1], base + math.sqrt(math.pi) * n[0, :, 2])


# ----------------------------------------------------------------------------- rasterizer


def test_pixel_centre_convention_square():
    # Square from (1.5, 1.5) to (5.5, 4.5): pixel centres cols 2..5, rows 2..4.
    uv = torch.tensor([[[1.5, 1.5], [5.5, 1.5], [5.5, 4.5], [1.5, 4.5]]])
    depth = torch.full((1, 4), 3.0)
    tris = torch.tensor([[0, 1, 2], [0, 2, 3]])
    fr = rasterize(uv, depth, tris, size=(8, 9))
    expected = torch.zeros(8, 9, dtype=torch.bool)
    expected[2:5, 2:6] = True
    assert torch.equal(fr.mask[0], expected)
    assert fr.face_idx.shape == (1, 8, 9)
    assert (fr.face_idx[0][~expected] == -1).all()
    assert torch.allclose(fr.depth[0][expected], torch.full((12,), 3.0))


@pytest.mark.parametrize("seed,cull", [(0, False), (1, False), (2, True)])
def test_zbuffer_matches_brute_force(seed, cull):
    H, W = 20, 28
    uv, depth, tris = random_mesh(seed, H=H, W=W)
    fr = rasterize(uv, depth, tris, size=(H, W), cull_backfaces=cull)
    ref_face, ref_z = brute_force(uv, depth, tris, H, W, cull=cull)
    assert (ref_face >= 0).sum() > 200  # the scenes are not trivially empty
    assert torch.equal(fr.mask, ref_face >= 0)
    same = (fr.face_idx == ref_face).double().mean().item()
    assert same > 0.999, same
    assert torch.allclose(fr.depth, ref_z, atol=1e-9)
    # triangles touching the vertex behind the camera and the degenerate one never win
    bad = [*(tris == 7).any(1).nonzero().flatten().tolist(), 0]
    assert not torch.isin(fr.face_idx, torch.tensor(bad)).any()


@pytest.mark.parametrize("seed", [0, 1])
def test_depth_map_is_the_fragments_depth(seed):
    """The z-buffer alone holds the nearest fragment's depth (stored as float32 in the pass's
    keys), 0 on background: the fragments' depth to float32 rounding, the same coverage."""
    H, W = 20, 28
    uv, depth, tris = random_mesh(seed, H=H, W=W)
    fr = rasterize(uv, depth, tris, size=(H, W))
    z = depth_map(uv, depth, tris, size=(H, W))
    assert z.shape == (2, H, W) and z.dtype == depth.dtype
    assert torch.equal(z > 0, fr.mask) and fr.mask.sum() > 200
    torch.testing.assert_close(z, fr.depth, rtol=1e-6, atol=0.0)
    assert (z[~fr.mask] == 0).all()
    with pytest.raises(RenderBackendError):
        depth_map(uv[0], depth, tris, size=(H, W))


def test_occlusion_and_backface_culling():
    # Two overlapping triangles at different depths, near one drawn second / first.
    uv = torch.tensor(
        [[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]],
        dtype=torch.float64,
    )
    depth = torch.tensor([[4.0, 4.0, 4.0, 2.0, 2.0, 2.0]], dtype=torch.float64)
    for tris, near_id in [([[0, 1, 2], [3, 4, 5]], 1), ([[3, 4, 5], [0, 1, 2]], 0)]:
        fr = rasterize(uv, depth, torch.tensor(tris), size=(12, 12))
        assert (fr.face_idx[fr.mask] == near_id).all()
        assert torch.allclose(fr.depth[fr.mask], torch.full_like(fr.depth[fr.mask], 2.0))
    # (0,0) -> (10,0) -> (0,10) has positive image-space area: a back face (clockwise seen by
    # the camera in a y-up frame). Culling drops it; the reversed winding survives.
    tri = torch.tensor([[0, 1, 2]])
    assert rasterize(uv, depth, tri, (12, 12)).mask.any()
    assert not rasterize(uv, depth, tri, (12, 12), cull_backfaces=True).mask.any()
    assert rasterize(uv, depth, tri.flip(1), (12, 12), cull_backfaces=True).mask.any()


def test_sphere_silhouette_area_and_culling():
    v, t = uv_sphere(48, 96, radius=50.0)  # mm, centred at the origin
    cam = CameraConfig()
    zero = torch.zeros(1, 3, dtype=torch.float64)
    scene = transform(v[None], zero, zero, cam)
    uv, d = project(scene, cam)
    fr = rasterize(uv, d, t, size=224)
    # Silhouette of a sphere (radius r, distance D) on the axis: radius f r / sqrt(D^2 - r^2)
    rad = 1015 * 0.5 / math.sqrt(100 - 0.25)
    area = math.pi * rad**2
    got = fr.mask.sum().item()
    assert abs(got - area) / area < 0.01, (got, area)
    # centred at (112, 112)
    rows, cols = fr.mask[0].nonzero(as_tuple=True)
    assert abs(rows.double().mean().item() - 112) < 0.2
    assert abs(cols.double().mean().item() - 112) < 0.2
    # a closed convex mesh looks the same with back faces culled, and only front faces win
    fc = rasterize(uv, d, t, size=224, cull_backfaces=True)
    assert torch.equal(fc.mask, fr.mask)
    assert torch.equal(fc.face_idx, fr.face_idx)
    # the visible depth is the near hemisphere: d = D - sqrt(r^2 - rho^2) on the axis
    assert abs(fr.depth[0, 112, 112].item() - 9.5) < 1e-3


def test_perspective_correct_interpolation_on_slanted_plane():
    # A plane tilted in depth; interpolated 3D x must equal the back-projected x of each pixel.
    cam = CameraConfig()
    v = torch.tensor(
        [[-60.0, -60.0, -80.0], [60.0, -60.0, 90.0], [60.0, 60.0, 90.0], [-60.0, 60.0, -80.0]],
        dtype=torch.float64,
    )[None]
    t = torch.tensor([[0, 1, 2], [0, 2, 3]])
    zero = torch.zeros(1, 3, dtype=torch.float64)
    scene = transform(v, zero, zero, cam)
    uv, d = project(scene, cam)
    fr = rasterize(uv, d, t, size=224)
    x_img = interpolate(scene[..., :1], fr, t)[0, ..., 0]
    cols = torch.arange(224, dtype=torch.float64).expand(224, 224)
    x_ref = (cols - 112.0) * fr.depth[0] / 1015.0
    m = fr.mask[0]
    assert m.sum() > 10000
    assert torch.allclose(x_img[m], x_ref[m], atol=1e-9)
    # interpolating depth itself gives the z-buffer depth (sum_i b_i d_i = 1 / sum_i l_i / d_i)
    d_img = interpolate(d[..., None], fr, t)[0, ..., 0]
    assert torch.allclose(d_img[m], fr.depth[0][m], atol=1e-12)
    # screen-linear weights l_i = b_i d_i / depth would be visibly wrong here (test has teeth)
    x_aff = interpolate((scene[..., :1] * d[..., None]), fr, t)[0, ..., 0] / fr.depth[0]
    assert (x_aff[m] - x_ref[m]).abs().max() > 1e-3


def test_dtype_batch_and_empty():
    v, t = uv_sphere(10, 20, radius=40.0, dtype=torch.float32)
    B = 3
    verts = v[None].repeat(B, 1, 1)
    ang = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    tr = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0], [0.0, 0.0, 20.0]])  # 3rd: behind cam
    out = render(verts, torch.full_like(verts, 0.5), t, ang, tr, torch.zeros(B, 27))
    assert out.image.dtype == torch.float32 and out.image.shape == (B, 3, 224, 224)
    assert out.mask[0].sum() > 0 and out.mask[2].sum() == 0
    # each batch element is rasterized independently
    single = render(
        verts[1:2], torch.full_like(verts[1:2], 0.5), t, ang[1:2], tr[1:2], torch.zeros(1, 27)
    )
    assert torch.equal(single.face_idx[0], out.face_idx[1])
    assert torch.allclose(single.image[0], out.image[1])


# ----------------------------------------------------------------------------- gradients


def _sphere_scene():
    v, t = uv_sphere(14, 28, radius=50.0)
    g = torch.Generator().manual_seed(3)
    v = v * (1 + 0.05 * torch.rand(len(v), 1, generator=g, dtype=torch.float64))
    albedo = 0.3 + 0.5 * torch.rand(1, len(v), 3, generator=g, dtype=torch.float64)
    gamma = 0.3 * torch.randn(1, 27, generator=g, dtype=torch.float64)
    ang = torch.tensor([[0.1, -0.2, 0.05]], dtype=torch.float64)
    tr = torch.tensor([[0.05, -0.02, 0.5]], dtype=torch.float64)
    weight = torch.rand(1, 3, 64, 64, generator=g, dtype=torch.float64)
    return v[None], t, albedo, gamma, ang, tr, weight


def test_gradients_match_finite_differences():
    verts, t, albedo, gamma, ang, tr, weight = _sphere_scene()
    cam = CameraConfig().scaled(64)

    def run(vv, aa, gg):
        return render(vv, aa, t, ang, tr, gg, cam)

    base = run(verts, albedo, gamma)
    keep = base.mask  # fixed pixel set: perturbations are far too small to change coverage
    dweight = torch.rand(
        1, 1, 64, 64, generator=torch.Generator().manual_seed(9), dtype=torch.float64
    )

    def loss(out):
        return (out.image * weight * keep).sum() + (out.depth * dweight * keep).sum()

    vv = verts.clone().requires_grad_()
    aa = albedo.clone().requires_grad_()
    gg = gamma.clone().requires_grad_()
    out = run(vv, aa, gg)
    loss(out).backward()
    h = 1e-6
    g = torch.Generator().manual_seed(4)
    # vertices that are seen: those of visible triangles
    seen = t[out.face_idx[out.face_idx >= 0].unique()].unique()
    idx = seen[torch.randperm(len(seen), generator=g)[:12]]
    for i in idx.tolist():
        for k in range(3):
            p, m = verts.clone(), verts.clone()
            p[0, i, k] += h
            m[0, i, k] -= h
            op, om = run(p, albedo, gamma), run(m, albedo, gamma)
            assert torch.equal(op.face_idx, base.face_idx)
            assert torch.equal(om.face_idx, base.face_idx)
            fd = (loss(op) - loss(om)).item() / (2 * h)
            an = vv.grad[0, i, k].item()
            assert abs(fd - an) <= 1e-5 * max(1.0, abs(fd)), (i, k, fd, an)
    # albedo and gamma: random directional derivatives
    for tensor, grad, name in [(albedo, aa.grad, "albedo"), (gamma, gg.grad, "gamma")]:
        dirn = torch.randn(tensor.shape, generator=g, dtype=torch.float64)
        args_p = {"albedo": albedo, "gamma": gamma}
        args_m = dict(args_p)
        args_p[name] = tensor + h * dirn
        args_m[name] = tensor - h * dirn
        fd = (
            loss(run(verts, args_p["albedo"], args_p["gamma"]))
            - loss(run(verts, args_m["albedo"], args_m["gamma"]))
        ).item() / (2 * h)
        an = (grad * dirn).sum().item()
        assert abs(fd - an) <= 1e-6 * max(1.0, abs(fd)), (name, fd, an)
    assert vv.grad.abs().sum() > 0 and aa.grad.abs().sum() > 0


def test_rasterize_gradients_wrt_uv_and_depth_gradcheck():
    # Two triangles; loss on pixels well inside: gradcheck of bary/depth w.r.t. uv and depth.
    uv = torch.tensor([[[2.2, 1.7], [13.6, 2.4], [3.1, 12.8], [12.9, 13.3]]], dtype=torch.float64)
    depth = torch.tensor([[3.0, 4.5, 2.5, 5.0]], dtype=torch.float64)
    tris = torch.tensor([[0, 2, 1], [1, 2, 3]])
    attrs = torch.randn(1, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    base = rasterize(uv, depth, tris, size=(16, 16))

    def f(uv_, d_, a_):
        fr = rasterize(uv_, d_, tris, size=(16, 16))
        assert torch.equal(fr.face_idx, base.face_idx)
        return interpolate(a_, fr, tris), fr.depth, fr.bary

    inputs = (uv.requires_grad_(), depth.requires_grad_(), attrs.requires_grad_())
    assert torch.autograd.gradcheck(f, inputs, eps=1e-7, atol=1e-6)


# ----------------------------------------------------------------------------- API


def test_backend_guard():
    uv = torch.rand(1, 3, 2) * 8
    d = torch.ones(1, 3) * 3
    t = torch.tensor([[0, 1, 2]])
    if not nvdiffrast_available():
        with pytest.raises(RenderBackendError, match="nvdiffrast"):
            rasterize(uv, d, t, size=8, backend="nvdiffrast")
        assert issubclass(RenderBackendError, FaceReconError)
    # auto on CPU always uses torch and matches it
    a = rasterize(uv, d, t, size=8, backend="auto")
    b = rasterize(uv, d, t, size=8, backend="torch")
    assert torch.equal(a.face_idx, b.face_idx)
    with pytest.raises(RenderBackendError):
        rasterize(uv, d, t, size=8, backend="opengl")


def test_render_attributes_and_fragment_fallback():
    v, t = uv_sphere(12, 24, radius=50.0)
    verts = v[None]
    zero = torch.zeros(1, 3, dtype=torch.float64)
    labels = (v[:, 0] > 1e-9).double()[:, None]  # subject's left half (image right)
    img, fr = render_attributes(verts, labels, t, zero, zero, mode="nearest")
    assert img.shape == (1, 1, 224, 224)
    # triangles are ~13 px wide at the equator: look beyond one triangle from the midline
    right = img[0, 0, :, 128:][fr.mask[0, :, 128:]]
    left = img[0, 0, :, :96][fr.mask[0, :, :96]]
    assert right.min() == 1.0 and left.max() == 0.0
    assert set(img.unique().tolist()) <= {0.0, 1.0}
    # interpolate from fragments without the packed cache gives the same result
    soft, fr2 = render_attributes(verts, labels, t, zero, zero)
    plain = Fragments(fr2.face_idx, fr2.bary, fr2.depth, fr2.mask)
    assert torch.allclose(interpolate(labels[None], plain, t).permute(0, 3, 1, 2), soft)


def test_vertex_normals_gradcheck():
    v, t = uv_sphere(6, 8)
    g = torch.Generator().manual_seed(5)
    v = (v * (1 + 0.2 * torch.rand(len(v), 1, generator=g, dtype=torch.float64)))[None]
    v = torch.cat([v, v.flip(-1)]).requires_grad_()  # batch of 2
    assert torch.autograd.gradcheck(lambda x: vertex_normals(x, t), (v,), eps=1e-6, atol=1e-6)


def test_vertex_normals_sum_each_vertex_triangles_and_follow_edited_triangles():
    """The sparse sums equal a plain loop over triangles (area-weighted sum, normalised); a
    triangle list edited in place is not served its old incidence."""
    g = torch.Generator().manual_seed(2)
    v = torch.randn(2, 30, 3, generator=g, dtype=torch.float64)
    t = torch.randint(0, 30, (50, 3), generator=g)
    t = t[(t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 0] != t[:, 2])]

    def plain(v, t):
        acc = torch.zeros_like(v)
        for a, b, c in t.tolist():
            fn = torch.linalg.cross(v[:, b] - v[:, a], v[:, c] - v[:, a], dim=-1)
            for k in (a, b, c):
                acc[:, k] += fn
        norm = acc.norm(dim=-1, keepdim=True)
        return torch.where(norm > 1e-12, acc / norm.clamp_min(1e-12), acc)

    torch.testing.assert_close(vertex_normals(v, t), plain(v, t))
    t[:10] = t[10:20].roll(1, dims=0)  # in place: ten triangles replaced
    torch.testing.assert_close(vertex_normals(v, t), plain(v, t))


def test_chunked_visibility_matches_single_pass(monkeypatch):
    import facerecon.render.rasterizer as rast

    uv, depth, tris = random_mesh(7, B=3, N=40, F=60, H=32, W=32)
    ref = rasterize(uv, depth, tris, size=32)
    monkeypatch.setattr(rast, "_CHUNK", 37)  # force many small runs, big boxes alone
    small = rasterize(uv, depth, tris, size=32)
    assert torch.equal(ref.face_idx, small.face_idx)
    assert torch.equal(ref.depth, small.depth)

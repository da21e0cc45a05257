"""Photo textures: UV chart, baking through the fitted camera, mirror fill, the photo albedo."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facerecon.render import CameraConfig, render
from facerecon.texture import (
    SOURCE_MIRRORED,
    SOURCE_SEEN,
    TextureConfig,
    UVChart,
    bake_photo,
    fill_texture,
    folded_triangles,
    mirror_vertices,
)


@pytest.fixture(scope="module")
def chart(model):
    return UVChart.of_model(model)


def _uv_area(uv: np.ndarray, tri: np.ndarray) -> np.ndarray:
    t = uv[tri]
    return (t[:, 1, 0] - t[:, 0, 0]) * (t[:, 2, 1] - t[:, 0, 1]) - (t[:, 2, 0] - t[:, 0, 0]) * (
        t[:, 1, 1] - t[:, 0, 1]
    )


def test_chart_is_one_to_one_and_raw_cylinder_is_not(model, chart):
    from facerecon.io import cylindrical_uv

    tri = model.triangles.numpy()
    assert (_uv_area(chart.uv, tri) > 0).all()
    assert (_uv_area(cylindrical_uv(model.mean_shape.numpy()), tri) < 0).sum() > 0
    assert chart.uv.min() >= 0 and chart.uv.max() <= 1


def test_folded_triangles_finds_a_fold():
    # a flat grid folds nowhere
    g = np.stack(np.meshgrid(np.arange(5.0), np.arange(5.0)), -1).reshape(-1, 2)
    grid = np.c_[g, np.zeros(len(g))]
    q = np.array([[i * 5 + j, i * 5 + j + 1, (i + 1) * 5 + j] for i in range(4) for j in range(4)])
    assert not folded_triangles(grid, q).any()
    # a second triangle laid back over the first across their shared edge folds
    pts = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0.2, 0.2, 0.01], [1, 1, 0]])
    np.testing.assert_array_equal(folded_triangles(pts, [[0, 1, 2], [2, 1, 3]]), [True, True])
    assert not folded_triangles(pts, [[0, 1, 2], [2, 1, 4]]).any()


def test_mirror_vertices_is_an_involution_on_most_vertices(model):
    v, tri = model.mean_shape.numpy(), model.triangles.numpy()
    m = mirror_vertices(v, tri)
    assert np.isin(m, tri).all()  # partners are on the surface
    assert (m[m] == np.arange(len(m))).mean() > 0.85
    gap = np.linalg.norm(v[m] - v * np.array([-1.0, 1.0, 1.0]), axis=1)
    assert np.median(gap) < 1.0 and np.corrcoef(v[:, 0], -v[m, 0])[0, 1] > 0.999


def test_bake_recovers_the_albedo_of_a_render(model, chart):
    """A render of the model with known albedo, pose and light, baked back through the true
    camera: the delit colours of the well-seen texels match the true albedo."""
    layout = model.layout
    g = torch.Generator().manual_seed(4)
    parts = dict(layout.split(layout.zeros(1)))
    parts["tex_coeff"] = torch.randn(1, layout.n_tex, generator=g)
    parts["angles"] = torch.tensor([[0.05, 0.35, 0.0]])
    gamma = torch.zeros(1, 27)
    gamma[0, [1, 10, 19]] = -0.15  # light from above-ish, all channels
    gamma[0, [3, 12, 21]] = 0.25
    with torch.no_grad():
        v, albedo = model(parts["id_coeff"], parts["exp_coeff"], parts["tex_coeff"])
        cam = CameraConfig()
        out = render(v, albedo, model.triangles, parts["angles"], parts["trans"], gamma, cam)
    photo = (out.image[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    M = np.array([[1.0, 0, 0], [0, 1.0, 0]])  # the crop is the photo
    pose = (v[0], parts["angles"][0], parts["trans"][0], gamma[0], M, chart, 256)
    exact = TextureConfig(irradiance_blur=0.0, shadow_floor=0.0)
    from facerecon.render import shading

    built = []
    build = shading._build_adjacency
    with pytest.MonkeyPatch.context() as mp:  # every bake of a chart shares its normals' setup
        mp.setattr(shading, "_build_adjacency", lambda *a: built.append(1) or build(*a))
        shading._ADJACENCY._kept.clear()
        baked = bake_photo(photo, *pose, config=exact)
        lit = bake_photo(photo, *pose, config=TextureConfig(delight=False)).color
    assert len(built) == 1
    truth = chart.bake_colors(albedo[0].clamp(0, 1), 256)
    good = baked.weight > 0.6
    assert good.mean() > 0.2
    err = np.abs(baked.color[good] - truth[good]).mean()
    lit_err = np.abs(lit[good] - truth[good]).mean()
    assert err < 0.02 and lit_err > 2 * err, (err, lit_err)
    # the gain is the light's mean irradiance on the seen face: photo ~ albedo x gain
    ratio = lit[good].mean(0) / truth[good].mean(0)
    np.testing.assert_allclose(baked.gain, ratio, rtol=0.1)
    # the far side of the turned face is not seen; the mirror fill covers it
    tex, source = fill_texture(baked, chart, truth, exact)
    assert tex.shape == (256, 256, 3) and (source == SOURCE_MIRRORED).sum() > 0.05 * good.size


def test_photo_albedo_renders_keep_geometry_and_labels(model):
    from facerecon.data.synthetic import SynthConfig, SyntheticFaces

    plain = SyntheticFaces(model, SynthConfig(clean=True), seed=3).sample(2, 1)
    photo = SyntheticFaces(model, SynthConfig(clean=True, albedo="photo"), seed=3).sample(2, 1)
    np.testing.assert_array_equal(plain.lm68, photo.lm68)
    np.testing.assert_array_equal(plain.vertices_model, photo.vertices_model)
    np.testing.assert_array_equal(plain.parse, photo.parse)
    face = plain.parse > 0
    diff = np.abs(plain.image.astype(int) - photo.image.astype(int)).mean(-1)
    assert diff[face].mean() > 5 and diff[~face].mean() < diff[face].mean() / 3
    again = SyntheticFaces(model, SynthConfig(clean=True, albedo="photo"), seed=3).sample(2, 1)
    np.testing.assert_array_equal(photo.image, again.image)


def _symmetric_texture(model, chart, size: int) -> np.ndarray:
    """``(T, T, 3)`` a texture that is a function of the surface point, symmetric in x:
    checks of 18 x 14 mm and bluish bands every 23 mm on a skin colour."""
    tm = chart.texels(size)
    pos = tm.image(tm.interpolate(model.mean_shape))
    ax, y = np.abs(pos[..., 0]), pos[..., 1]
    checks = 0.5 + 0.5 * np.sin(2 * np.pi * ax / 18.0) * np.cos(2 * np.pi * y / 14.0)
    tex = np.array([0.75, 0.55, 0.45], np.float32) * (0.7 + 0.3 * checks[..., None])
    tex[..., 2] += 0.15 * (np.sin(2 * np.pi * y / 23.0) > 0)
    return tex.astype(np.float32)


def _photograph(model, chart, texture, yaw_deg: float, size: int = 448):
    """A render of the mean face with ``texture`` at ``yaw_deg`` under a side light, ``size``
    pixels square (the 224 crop scaled up): a :class:`PhotoView` with the true parameters."""
    from facerecon.texture import PhotoView, render_textured

    layout = model.layout
    trans = layout.split(layout.zeros(1))["trans"]
    angles = torch.tensor([[0.0, np.radians(yaw_deg), 0.0]], dtype=torch.float32)
    gamma = torch.zeros(1, 27)
    gamma[0, [1, 10, 19]] = -0.1
    gamma[0, [3, 12, 21]] = 0.2
    tex = torch.from_numpy(texture).permute(2, 0, 1)[None]
    with torch.no_grad():
        img, _ = render_textured(model.mean_shape[None], tex, torch.from_numpy(chart.uv).float(),
                                 model.triangles, angles, trans, gamma,
                                 CameraConfig().scaled(size))  # fmt: skip
    photo = (img[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    s = size / 224.0  # crop pixel centres -> photo pixel centres
    crop_to_original = np.array([[s, 0, (s - 1) / 2], [0, s, (s - 1) / 2]])
    return PhotoView(photo, model.mean_shape.numpy(), angles[0].numpy(), trans[0].numpy(),
                     gamma[0].numpy(), crop_to_original)  # fmt: skip


def _halves(model, chart, size: int):
    """Texels of the front face, 8 mm or more off the midline: ``(x < 0, x > 0)`` masks."""
    tm = chart.texels(size)
    x = tm.image(tm.interpolate(model.mean_shape[:, :1]))[..., 0]
    front = tm.image(tm.interpolate(model.front_mask[:, None].float()))[..., 0] > 0.99
    region = chart.cover(size) & front & (np.abs(x) > 8)
    return region & (x < 0), region & (x > 0)


@pytest.mark.parametrize("yaw", [45.0, -45.0])
def test_mirror_fill_recovers_the_hidden_half_at_45_degrees(model, chart, yaw):
    """A face with a known (symmetric) texture photographed at 45 degrees yaw under a side
    light: the texture filled from that photo is nearly as good on the hidden half (mirrored)
    as on the visible one."""
    from facerecon.texture import photo_texture

    T = 256
    known = _symmetric_texture(model, chart, T)
    view = _photograph(model, chart, known, yaw)
    tex = photo_texture(chart, [view], model.tex_mean.numpy(), TextureConfig(size=T))
    albedo = tex.image.astype(np.float32) / 255.0 / tex.gain.astype(np.float32)
    err = np.abs(albedo - known).mean(-1)
    visible, hidden = _halves(model, chart, T)  # yaw > 0: the subject's right (x < 0) is seen
    if yaw < 0:
        visible, hidden = hidden, visible
    assert (tex.source[visible] == SOURCE_SEEN).mean() > 0.95
    assert (tex.source[hidden] == SOURCE_MIRRORED).mean() > 0.9
    e_vis, e_hid = err[visible].mean(), err[hidden].mean()
    assert e_vis < 0.02, e_vis  # measured 0.010 (+45) / 0.009 (-45)
    assert e_hid < 1.5 * e_vis, (e_hid, e_vis)  # measured 1.30x / 1.29x
    # the model's albedo in place of the photo would be far off (the scale of the check)
    fill = chart.bake_colors(model.tex_mean.numpy(), T)
    assert np.abs(fill - known).mean(-1)[hidden].mean() > 4 * e_vis


def test_views_blend_into_one_texture(model, chart):
    """Two views (yaw -40 and +40 degrees) of the known texture: each half is seen by one of
    them, the blend is good on both halves and needs no mirror."""
    from facerecon.texture import photo_texture

    T = 256
    known = _symmetric_texture(model, chart, T)
    views = [_photograph(model, chart, known, yaw, size=224) for yaw in (-40.0, 40.0)]
    tex = photo_texture(chart, views, model.tex_mean.numpy(), TextureConfig(size=T))
    albedo = tex.image.astype(np.float32) / 255.0 / tex.gain.astype(np.float32)
    err = np.abs(albedo - known).mean(-1)
    for half in _halves(model, chart, T):
        assert (tex.source[half] == SOURCE_SEEN).mean() > 0.95
        assert err[half].mean() < 0.015, err[half].mean()  # measured 0.008 / 0.007
    one = photo_texture(chart, views[:1], model.tex_mean.numpy(), TextureConfig(size=T))
    assert tex.seen > one.seen + 0.1


def test_fill_blends_the_model_albedo_in_without_a_seam(model, chart):
    """Seen: a band around the midline, the model's albedo plus a colour offset (the person is
    redder than the model), with small holes; the rest unseen. The fill continues the
    person's colour into the albedo (Poisson: albedo gradients, the band's colours at the
    border), inpaints the holes, and leaves no step at the band's edge."""
    from facerecon.texture import SOURCE_ALBEDO, SOURCE_INPAINTED, BakedTexture

    T = 256
    albedo = chart.bake_colors(model.tex_mean.numpy(), T)
    offset = np.array([0.08, -0.03, 0.05], np.float32)
    truth = np.clip(albedo + offset, 0, 1)
    tm = chart.texels(T)
    x = tm.image(tm.interpolate(model.mean_shape[:, :1]))[..., 0]
    cover = chart.cover(T)
    seen = cover & (np.abs(x) < 35)
    holes = np.zeros_like(seen)
    mxy = chart.mirror_xy(T)
    for r, c in ((100, 100), (140, 106), (160, 95), (80, 108)):  # and their mirror images
        mc, mr = np.round(mxy[r, c]).astype(int)
        holes[r - 2 : r + 3, c - 2 : c + 3] = holes[mr - 2 : mr + 3, mc - 2 : mc + 3] = True
    weight = (seen & ~holes).astype(np.float32)
    baked = BakedTexture(truth.copy(), weight, cover, np.ones(3))
    tex, source = fill_texture(baked, chart, albedo, TextureConfig(size=T))
    err = np.abs(tex - truth).mean(-1)
    in_holes = source[holes & seen]  # inpainted (their edges may take a seen mirror texel)
    assert (in_holes == SOURCE_INPAINTED).mean() > 0.5 and (in_holes == SOURCE_ALBEDO).mean() < 0.1
    unseen = cover & ~seen
    assert (source[unseen] == SOURCE_ALBEDO).mean() > 0.95
    assert err[holes & seen].mean() < 0.02
    assert err[unseen].mean() < 0.02, err[unseen].mean()  # the albedo alone: 0.053
    assert np.abs(albedo - truth).mean(-1)[unseen].mean() > 0.045
    # no seam: along the band's edge the texture is as close to the truth as anywhere
    import cv2

    k = np.ones((5, 5), np.uint8)
    edge = cover & (cv2.dilate(seen.astype(np.uint8), k) > cv2.erode(seen.astype(np.uint8), k))
    assert err[edge].mean() < 0.02 and np.percentile(err[edge], 95) < 0.04


def test_bake_colors_matches_the_per_face_bake_and_samples_back(model, chart):
    """``UVChart.bake_colors`` (texel map built once per model) gives the texture the old
    per-face bake (``io.bake_vertex_colors_to_texture``) gives on the same chart, and
    ``vertex_colors`` reads the per-vertex colours back."""
    from facerecon.io import bake_vertex_colors_to_texture

    T = 256
    colors = np.clip(model.tex_mean.numpy(), 0, 1)
    new = chart.bake_colors(colors, T)
    old = bake_vertex_colors_to_texture(chart.uv, model.triangles.numpy(), colors, size=T)
    import cv2

    inner = cv2.erode(chart.cover(T).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    diff = np.abs(new - old.astype(np.float32) / 255.0).mean(-1)[inner]
    assert diff.mean() < 0.01 and np.percentile(diff, 99) < 0.05, (diff.mean(), diff.max())
    used = np.unique(model.triangles.numpy())
    back = chart.vertex_colors(np.round(new * 255).astype(np.uint8))
    assert np.abs(back[used] - colors[used]).mean() < 0.01


def test_detail_ratio_drops_smooth_shading_keeps_features():
    """:func:`detail_ratio` is 1 on a flat texture and on shading smooth at the blur's scale
    (a light falling across the face), and keeps a dark brow-sized stripe."""
    from facerecon.data.photo_albedo import detail_ratio

    size = 256
    xx = np.mgrid[0:size, 0:size][1].astype(np.float32) / size
    flat = np.full((size, size, 3), 0.6, np.float32)
    np.testing.assert_allclose(detail_ratio(flat, 6.0), 1.0, atol=1e-5)
    shading = (0.3 + 0.6 * xx)[..., None] * np.array([0.9, 0.7, 0.6], np.float32)
    inner = (slice(40, -40), slice(40, -40))
    r = detail_ratio(shading, 6.0)
    assert np.abs(r[inner] - 1).max() < 0.02
    brow = shading.copy()
    brow[120:126, 80:170] *= 0.3
    r = detail_ratio(brow, 6.0)
    assert r[122, 100:150].mean() < 0.5
    assert np.abs(r[60:100, 60:200] - 1).max() < 0.05


def test_photo_detail_albedo_keeps_the_model_albedo_below_the_detail(model):
    """``albedo="photo-detail"``: the render is the model-albedo render times the texture's
    detail, so smoothed over a few pixels it matches the model-albedo render (colour and
    shading at the face's scale come from the identity's albedo and the true shape), unlike
    ``"photo"``, which carries the source photo's colour and shading."""
    import cv2

    from facerecon.data.synthetic import SynthConfig, SyntheticFaces

    def blurred(albedo):
        s = SyntheticFaces(model, SynthConfig(clean=True, albedo=albedo), seed=3).sample(2, 1)
        return cv2.GaussianBlur(s.image.astype(np.float32), (0, 0), 6.0), s

    plain, s = blurred("model")
    detail, _ = blurred("photo-detail")
    photo, _ = blurred("photo")
    inner = cv2.erode((s.parse > 0).astype(np.uint8), np.ones((25, 25), np.uint8)) > 0
    err_detail = np.abs(detail - plain)[inner].mean()
    err_photo = np.abs(photo - plain)[inner].mean()
    print(f"smoothed difference from the model-albedo render: detail {err_detail:.1f}, "
          f"photo {err_photo:.1f} grey levels")  # fmt: skip
    assert err_detail < 0.5 * err_photo
    assert err_detail < 8.0


def test_chart_cache_reads_back_the_built_chart_and_rebuilds_a_corrupt_one(model, chart, tmp_path):
    built = UVChart.of_model(model, cache=tmp_path)
    (path,) = tmp_path.iterdir()
    cached = UVChart.of_model(model, cache=tmp_path)
    assert set(cached._maps) == set(chart.cached_sizes())  # read, not rebuilt
    for size in chart.cached_sizes():
        a, b = chart.texels(size), cached.texels(size)
        for name in ("pix", "inside", "face", "corners", "bary"):
            assert torch.equal(getattr(a, name), getattr(b, name)), (size, name)
        np.testing.assert_array_equal(a.cover, b.cover)
    np.testing.assert_array_equal(chart.uv, cached.uv)
    np.testing.assert_array_equal(chart.mirror, cached.mirror)
    assert cached.crop_area() == chart.crop_area() == built.crop_area()
    # the same texture from the cached chart
    col = model.tex_mean.numpy()
    np.testing.assert_array_equal(chart.bake_colors(col, 512), cached.bake_colors(col, 512))
    path.write_bytes(b"not an npz")
    again = UVChart.of_model(model, cache=tmp_path)
    np.testing.assert_array_equal(again.uv, chart.uv)
    assert np.load(path)["uv"].shape == chart.uv.shape  # rewritten


def test_texture_size_follows_the_pixels_the_face_covers(chart):
    area = chart.crop_area()
    assert 10_000 < area < 40_000  # the mean face fills a good part of the 224 crop
    fraction = chart.texels(chart.work_size).cover.mean()
    sizes = []
    for scale in (0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 12.0):
        m = np.array([[scale, 0.0, 10.0], [0.0, scale, 20.0]])
        size = chart.size_for([m])
        pixels = area * scale * scale
        if size < chart.SIZES[-1]:  # enough texels, and the size below has too few
            assert fraction * size * size >= chart.OVERSAMPLE * pixels
        if size > chart.SIZES[0]:
            assert fraction * (size // 2) ** 2 < chart.OVERSAMPLE * pixels
        sizes.append(size)
    assert sizes == sorted(sizes) and sizes[0] == 512 and sizes[-1] == 2048
    # views add up: three photos at one scale need more texels than one
    m = np.array([[2.4, 0.0, 0.0], [0.0, 2.4, 0.0]])
    assert chart.size_for([m]) == 512 and chart.size_for([m, m, m]) == 1024

"""Photo textures: UV chart, baking through the fitted camera, mirror fill, the photo albedo."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facerecon.render import CameraConfig, render
from facerecon.texture import (
    SOURCE_MIRRORED,
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
    baked = bake_photo(photo, *pose, config=exact)
    truth = chart.bake_colors(albedo[0].clamp(0, 1), 256)
    good = baked.weight > 0.6
    assert good.mean() > 0.2
    err = np.abs(baked.color[good] - truth[good]).mean()
    lit = bake_photo(photo, *pose, config=TextureConfig(delight=False)).color
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

"""Mesh decimation onto a subset of a model's vertices (facerecon.morphable.decimate)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facerecon.morphable import decimate as dec
from facerecon.render import CameraConfig, render


def _edge_counts(tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1)
    return np.unique(e, axis=0, return_counts=True)


def _normals(v: np.ndarray, tri: np.ndarray) -> np.ndarray:
    n = np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]])
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def _bumpy_grid(n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """A height field over an n x n grid, triangulated counter-clockwise seen from +z."""
    x, y = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    z = 0.1 * np.sin(3 * x) * np.cos(2 * y)
    v = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = (
        idx[:-1, :-1].ravel(),
        idx[:-1, 1:].ravel(),
        idx[1:, :-1].ravel(),
        idx[1:, 1:].ravel(),
    )
    tri = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return v, tri


def test_decimate_grid_keeps_border_orientation_and_manifold():
    v, tri = _bumpy_grid()
    keep, out, rows = dec.decimate(v, tri, target=300)
    n = v.shape[0]
    edges, count = _edge_counts(tri)
    border = np.unique(edges[count == 1])
    assert np.isin(border, keep).all()  # the border stays
    assert keep.size <= 300 + border.size  # only fixed vertices may stop it short
    assert keep.size < n / 2
    _, cnt = _edge_counts(out)
    assert cnt.max() <= 2  # manifold
    assert (np.unique(out) == np.arange(keep.size)).all()  # every kept vertex is used
    normals = _normals(v[keep], out)
    assert normals[:, 2].min() > 0.5  # nothing flipped (the field faces +z)
    assert rows.shape == (out.shape[0],) and rows.max() < tri.shape[0]
    # the surface still covers the square: areas projected on xy add up to 1
    p = v[keep][:, :2]
    e1, e2 = p[out[:, 1]] - p[out[:, 0]], p[out[:, 2]] - p[out[:, 0]]
    area = 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    assert area.min() > 0 and area.sum() == pytest.approx(1.0, abs=1e-9)


def test_decimate_honours_fixed_vertices():
    v, tri = _bumpy_grid()
    fixed = np.zeros(v.shape[0], dtype=bool)
    fixed[[100, 200, 455, 466]] = True
    keep, _, _ = dec.decimate(v, tri, target=200, fixed=fixed)
    assert np.isin([100, 200, 455, 466], keep).all()


@pytest.fixture(scope="module")
def coarse(model, tmp_path_factory):
    import os

    old = os.environ.get("FACERECON_CACHE")
    os.environ["FACERECON_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    dec._MEMO._kept.clear()  # made here, whatever earlier modules made
    try:
        yield dec.coarse_model(model, 0.33)
    finally:
        if old is None:
            os.environ.pop("FACERECON_CACHE")
        else:
            os.environ["FACERECON_CACHE"] = old


def test_coarse_model_is_the_model_at_its_vertices(model, coarse):
    keep = torch.as_tensor(coarse.meta["kept_vertices"])
    assert coarse.n_vertices == keep.numel() <= 0.36 * model.n_vertices
    assert coarse.layout == model.layout
    torch.manual_seed(0)
    lay = model.layout
    ids, exp, tex = torch.randn(2, lay.n_id), torch.randn(2, lay.n_exp), torch.randn(2, lay.n_tex)
    v_full, a_full = model(ids, exp, tex)
    v, a = coarse(ids, exp, tex)
    torch.testing.assert_close(v, v_full[:, keep])
    torch.testing.assert_close(a, a_full[:, keep])
    torch.testing.assert_close(keep[coarse.landmarks68], model.landmarks68)
    assert torch.equal(coarse.skin_mask, model.skin_mask[keep])
    _, cnt = _edge_counts(coarse.triangles.numpy())
    assert cnt.max() <= 2
    # the front region keeps about its share of the surface
    share = coarse.front_face_mask.float().mean() / model.front_face_mask.float().mean()
    assert 0.9 < float(share) < 1.1


def test_coarse_model_renders_like_the_model(model, coarse):
    """At 112 px the coarse mesh's render differs from the full mesh's by well under the
    photometric residuals a fit works with (a few % of intensity)."""
    torch.manual_seed(1)
    lay = model.layout
    ids, exp, tex = (
        torch.randn(2, lay.n_id),
        0.5 * torch.randn(2, lay.n_exp),
        torch.randn(2, lay.n_tex),
    )
    angles = torch.tensor([[0.1, 0.5, 0.0], [0.0, -0.3, 0.1]])
    trans, gamma = torch.zeros(2, 3), torch.zeros(2, 27)
    gamma[:, 0], gamma[:, 1], gamma[:, 3] = 0.8, -0.3, 0.3
    cam = CameraConfig().scaled(112)
    full = render(*model(ids, exp, tex), model.triangles, angles, trans, gamma, cam)
    crude = render(*coarse(ids, exp, tex), coarse.triangles, angles, trans, gamma, cam)
    both = (full.mask * crude.mask).bool().expand_as(full.image)
    union = ((full.mask + crude.mask) > 0).sum()
    assert float((full.mask * crude.mask).sum() / union) > 0.995
    assert float((full.image - crude.image).abs()[both].mean()) < 0.01


def test_coarse_model_is_cached_on_disk(model, coarse, monkeypatch, tmp_path):
    """A second process reads the decimation instead of making it (it is made once)."""
    import os

    cache = os.environ["FACERECON_CACHE"]
    assert list((dec.cache_dir() / "coarse").glob("*.npz")), cache
    dec._MEMO._kept.clear()

    def fail(*args, **kwargs):
        raise AssertionError("decimate ran again")

    monkeypatch.setattr(dec, "decimate", fail)
    again = dec.coarse_model(model, 0.33)
    assert again is not coarse
    assert torch.equal(again.triangles, coarse.triangles)
    assert dec.coarse_model(model, 1.0) is model


def test_fit_terms_on_the_coarse_mesh_match_the_full_mesh(model, coarse):
    """A fit's terms at 112 px with ``mesh_fraction`` 0.33: the same landmark term (it stays on
    the full model), a photometric term and an identity gradient close to the full mesh's."""
    from facerecon.fit import FitConfig, FitTarget, StageConfig
    from facerecon.fit.core import Params, hybrid_terms, landmark_observations

    torch.manual_seed(2)
    lay = model.layout
    truth = lay.join(
        {
            "id_coeff": torch.randn(2, lay.n_id),
            "exp_coeff": 0.5 * torch.randn(2, lay.n_exp),
            "tex_coeff": 0.5 * torch.randn(2, lay.n_tex),
            "angles": torch.tensor([[0.05, 0.3, 0.0], [-0.1, -0.2, 0.05]]),
            "gamma": torch.tensor([0.8, -0.2, 0.3, 0.1] + [0.0] * 5).repeat(2, 3),
            "trans": torch.zeros(2, 3),
        }
    )
    parts = lay.split(truth)
    cam = CameraConfig()
    with torch.no_grad():
        v, a = model(parts["id_coeff"], parts["exp_coeff"], parts["tex_coeff"])
        out = render(v, a, model.triangles, parts["angles"], parts["trans"], parts["gamma"], cam)
        image = out.image.clamp(0, 1) * out.mask + 0.4 * (1 - out.mask)
        from facerecon.fit import fitted_landmarks

        lm = fitted_landmarks(model, v, parts["angles"], parts["trans"], cam)
    target = FitTarget(image=image, lm68=lm, attention=torch.ones_like(image[:, :1]))
    start = truth.clone()
    start[:, : lay.n_id] += 0.5 * torch.randn(2, lay.n_id)  # a wrong identity to pull back
    cfg = FitConfig()
    obs = landmark_observations(model, target, cfg)
    terms, grads = {}, {}
    for fraction in (1.0, 0.33):
        params = Params(model, 2, False, image)
        params.load(model, start)
        stage = StageConfig(iters=1, size=112, mesh_fraction=fraction)
        t = hybrid_terms(model, params, target, cam, stage, cfg, observations=obs)
        t["photo"].backward()
        terms[fraction] = {k: x.detach() for k, x in t.items()}
        grads[fraction] = params.id_coeff.grad.clone()
    full, crude = terms[1.0], terms[0.33]
    torch.testing.assert_close(full["landmark"], crude["landmark"])
    assert float(crude["photo"]) == pytest.approx(float(full["photo"]), rel=0.1)
    cos = torch.nn.functional.cosine_similarity(grads[1.0], grads[0.33], dim=1)
    assert float(cos.min()) > 0.9, cos

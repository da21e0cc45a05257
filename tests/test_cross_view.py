"""The multi-view fit's cross-view term: point sampling, vertex visibility, the loss, and that
it pulls a wrong shape towards the true one on views rendered with a known shape."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from facerecon.losses import cross_view_loss, sample_at_points
from facerecon.render import CameraConfig, project, rasterize, visible_vertices


def test_sample_at_points_reads_pixel_centres_and_interpolates():
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.random((2, 3, 7, 9)))
    rows, cols = np.meshgrid(np.arange(7), np.arange(9), indexing="ij")
    centres = torch.from_numpy(np.stack([cols.ravel(), rows.ravel()], -1)).double()
    got = sample_at_points(image, centres.expand(2, -1, -1))
    want = image.flatten(2).transpose(1, 2)
    torch.testing.assert_close(got, want)
    # half way between (row 2, col 3) and (row 2, col 4), and a quarter down to row 3
    pt = torch.tensor([[[3.5, 2.25]]], dtype=torch.float64).expand(2, -1, -1)
    a, b = image[:, :, 2, 3], image[:, :, 2, 4]
    c, d = image[:, :, 3, 3], image[:, :, 3, 4]
    want = 0.75 * (a + b) / 2 + 0.25 * (c + d) / 2
    torch.testing.assert_close(sample_at_points(image, pt)[:, 0], want)


def test_sample_at_points_gradcheck():
    rng = np.random.default_rng(1)
    image = torch.from_numpy(rng.random((1, 2, 6, 6))).requires_grad_()
    pts = torch.from_numpy(rng.uniform(0.6, 4.4, (1, 5, 2))).requires_grad_()
    assert torch.autograd.gradcheck(sample_at_points, (image, pts))


def _consistent(rng, views=3, n=50):
    albedo = torch.from_numpy(rng.uniform(0.2, 0.8, (1, n, 3)))
    shading = torch.from_numpy(rng.uniform(0.4, 1.6, (views, n, 3)))
    weights = torch.from_numpy(rng.uniform(0.0, 1.0, (views, n)))
    return albedo * shading, shading, weights


def test_cross_view_loss_is_zero_for_one_albedo_and_grows_with_disagreement():
    rng = np.random.default_rng(2)
    colors, shading, weights = _consistent(rng)
    assert float(cross_view_loss(colors, shading, weights)) == pytest.approx(0.0, abs=1e-12)
    # one view alone, or no point seen twice: nothing to compare
    assert float(cross_view_loss(colors[:1], shading[:1], weights[:1])) == 0.0
    apart = weights.clone()
    apart[0, :25], apart[1:, 25:] = 0, 0
    apart[2] = 0
    assert float(cross_view_loss(colors + 0.1, shading, apart)) == 0.0
    losses = []
    for delta in (0.02, 0.05, 0.2):
        moved = colors.clone()
        moved[1] += delta
        losses.append(float(cross_view_loss(moved, shading, weights)))
    assert 0 < losses[0] < losses[1] < losses[2]
    # a point a view does not see (weight 0) cannot cost anything
    moved = colors.clone()
    moved[1, 7] += 5.0
    w = weights.clone()
    w[1, 7] = 0
    assert float(cross_view_loss(moved, shading, w)) == pytest.approx(0.0, abs=1e-12)


def test_cross_view_loss_matches_its_definition_and_gradcheck():
    rng = np.random.default_rng(3)
    colors, shading, weights = _consistent(rng, views=3, n=12)
    colors = colors + torch.from_numpy(rng.normal(0, 0.05, colors.shape))
    eps = 1e-2
    a = (colors / shading).numpy()
    w = weights.numpy()
    num = den = 0.0
    for i, j in ((0, 1), (0, 2), (1, 2)):
        r = np.sqrt(((a[i] - a[j]) ** 2).sum(-1) + eps**2) - eps
        num += (w[i] * w[j] * r).sum()
        den += (w[i] * w[j]).sum()
    assert float(cross_view_loss(colors, shading, weights, eps=eps)) == pytest.approx(num / den)
    colors.requires_grad_()
    shading.requires_grad_()
    assert torch.autograd.gradcheck(lambda c, s: cross_view_loss(c, s, weights), (colors, shading))


def test_visible_vertices_hides_points_behind_a_surface():
    """A square at depth 9 in front of a point at depth 9.5 hides it; a point beside the
    square, or in front of it, is seen; a point outside the image is not."""
    cam = CameraConfig(size=64, center=32.0, focal=100.0)
    # scene points (camera at z = 10): the square's corners at z = 1 (depth 9)
    square = torch.tensor([[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], dtype=torch.float64)
    probes = torch.tensor(
        [[0.2, 0.1, 0.5], [0.0, 0.0, 1.5], [5.0, 0.0, 1.0], [30.0, 0.0, 1.0]], dtype=torch.float64
    )
    scene = torch.cat([square, probes])[None]
    uv, depth = project(scene, cam)
    tri = torch.tensor([[0, 1, 2], [0, 2, 3]])
    frags = rasterize(uv, depth, tri, (64, 64))
    seen = visible_vertices(uv, depth, frags.depth)[0].tolist()
    assert seen[4:] == [False, True, False, False]


@pytest.fixture(scope="module")
def model64():
    from facerecon.morphable import load_face_model

    return load_face_model("bfm-lite").double()


@pytest.fixture(scope="module")
def rendered_triple(model64):
    """Three views (yaw -30 / 0 / 30) of one bfm-lite face rendered with our renderer in the
    crop camera at 112 px (the coarse stage's size), its albedo a smooth pattern over model
    space (so the photos carry texture the cross-view term can match), with different light
    per view; and the true parameters."""
    from facerecon.render import render

    model = model64
    torch.manual_seed(0)
    lay = model.layout
    true = torch.zeros(3, lay.size, dtype=torch.float64)
    parts = lay.split(true)
    id_coeff = torch.randn(1, parts["id_coeff"].shape[1], dtype=torch.float64) * 1.2
    mean = model.mean_shape.double()
    x, y = mean[:, 0], mean[:, 1]
    pattern = 0.5 + 0.18 * torch.stack(
        [torch.sin(x / 9.0) * torch.cos(y / 11.0), torch.sin(y / 7.0 + 1.0),
         torch.cos(x / 6.0 - y / 13.0)], dim=-1)  # fmt: skip
    angles = torch.tensor([[0.05, -0.52, 0.0], [0.05, 0.0, 0.0], [0.05, 0.52, 0.0]]).double()
    trans = torch.zeros(3, 3, dtype=torch.float64)
    gamma = torch.zeros(3, 27, dtype=torch.float64)
    gamma[:, 0] = 0.2
    gamma[:, 3] = torch.tensor([0.3, -0.2, 0.1])  # a side light that differs per view
    gamma[:, 9 + 3] = gamma[:, 3]
    gamma[:, 18 + 3] = gamma[:, 3]
    vertices = model.shape(id_coeff.expand(3, -1), torch.zeros_like(parts["exp_coeff"]))
    with torch.no_grad():
        out = render(vertices, pattern[None].expand(3, -1, -1), model.triangles, angles, trans,
                     gamma, CameraConfig().scaled(112))  # fmt: skip
    return {"image": out.image, "id_coeff": id_coeff, "angles": angles, "trans": trans,
            "gamma": gamma}  # fmt: skip


class _Pose:
    def __init__(self, angles, trans, gamma):
        self.angles, self.trans, self.gamma = angles, trans, gamma


def test_cross_view_term_is_least_at_the_true_shape_and_pulls_towards_it(model64, rendered_triple):
    """With the views' true pose and light, the term is smaller at the true identity than at
    the mean face or a perturbed identity, and its gradient with respect to the identity
    points back towards the truth."""
    from facerecon.fit.core import cross_view_term
    from facerecon.render import render

    t, model = rendered_triple, model64
    cam = CameraConfig().scaled(112)
    pose = _Pose(t["angles"], t["trans"], t["gamma"])
    n_exp = model.layout.split(torch.zeros(1, model.layout.size))["exp_coeff"].shape[1]
    exp0 = torch.zeros(3, n_exp, dtype=torch.float64)

    def term(id_coeff):
        v = model.shape(id_coeff.expand(3, -1), exp0)
        with torch.no_grad():
            out = render(v.detach(), torch.full_like(v, 0.5), model.triangles, pose.angles,
                         pose.trans, pose.gamma, cam)  # fmt: skip
        return cross_view_term(model, v, pose, t["image"], out, cam)

    true = t["id_coeff"]
    at_true = float(term(true))
    at_mean = float(term(torch.zeros_like(true)))
    wrong = (true + 0.6 * torch.randn(true.shape, generator=torch.Generator().manual_seed(5),
                                      dtype=torch.float64)).requires_grad_()  # fmt: skip
    loss = term(wrong)
    loss.backward()
    at_wrong = float(loss.detach())
    print(f"cross-view term: true {at_true:.4f}, mean face {at_mean:.4f}, wrong {at_wrong:.4f}")
    assert at_true < 0.5 * at_mean and at_true < 0.5 * at_wrong
    # descending the term alone brings the shape nearer the truth
    from facerecon.fit.adam import Adam

    front = model.front_mask

    def shape_error(id_coeff) -> float:
        with torch.no_grad():
            d = model.shape(id_coeff, exp0[:1]) - model.shape(true, exp0[:1])
        return float(d[0, front].pow(2).sum(-1).mean().sqrt())

    start = shape_error(wrong.detach())
    opt = Adam([{"params": [wrong], "lr": 0.05}])
    for _ in range(40):
        opt.zero_grad(set_to_none=True)
        term(wrong).backward()
        opt.step()
    end = shape_error(wrong.detach())
    print(f"shape error {start:.2f} -> {end:.2f} mm after 40 steps on the term alone")
    assert end < 0.6 * start


def test_multiview_config_lets_the_cross_view_term_move_the_shape():
    """The joint fit's photometric stages move the shape through the cross-view term alone:
    the photo term sees the shape as a constant (its side views' grazing pixels bent it);
    with the term off the shape stays the landmark stage's."""
    from facerecon.fit import FitConfig
    from facerecon.fit.config import SHAPE
    from facerecon.methods.multiview import multiview_config

    joint = multiview_config(FitConfig())
    assert joint.loss.extra["cross_view"] > 0
    for st in (joint.coarse, joint.fine):
        assert st.frozen == () and st.photo_shape is False
    assert FitConfig().coarse.photo_shape is True and "cross_view" not in FitConfig().loss.extra
    off = multiview_config(FitConfig(), cross_view=0.0)
    assert "cross_view" not in off.loss.extra
    assert off.coarse.frozen == SHAPE and off.fine.frozen == SHAPE


def test_joint_fit_adds_the_cross_view_term_only_with_three_views(model):
    """The term appears in the fit's photometric stages of three simultaneous views, not of
    two (:data:`facerecon.fit.core.CROSS_VIEW_MIN_VIEWS`) nor of an image set."""
    from facerecon.fit import FitConfig, FitTarget, StageConfig
    from facerecon.fit.core import Params, hybrid_terms
    from facerecon.methods.multiview import multiview_config

    cfg = multiview_config(FitConfig())
    stage = StageConfig(iters=1, size=64)
    for views, shared_exp, expect in ((3, True, True), (2, True, False), (3, False, False)):
        image = torch.rand(views, 3, 224, 224, generator=torch.Generator().manual_seed(views))
        image = image.to(model.mean_shape)
        lm = model.mean_shape.new_zeros(views, 68, 2) + 112
        target = FitTarget(image, lm, attention=torch.ones_like(image[:, :1]))
        c = dataclasses.replace(cfg, shared_expression=shared_exp)
        params = Params(model, views, True, image, shared_exp)
        terms = hybrid_terms(model, params, target, CameraConfig(), stage, c)
        assert ("cross_view" in terms) is expect
        if expect:
            terms["cross_view"].backward()
            assert float(params.id_coeff.grad.abs().sum()) > 0


def test_joint_fit_of_two_views_keeps_the_shape_in_its_photometric_stages(model):
    """Without the cross-view term (two views), nothing photometric moves the joint fit's
    shape; with three views the term does."""
    from facerecon.fit import FitConfig, FitTarget, StageConfig, fit
    from facerecon.methods.multiview import multiview_config

    cfg = dataclasses.replace(
        multiview_config(FitConfig()),
        landmark_iters=0,
        coarse=StageConfig(iters=2, size=64, frozen=(), photo_shape=False),
        fine=StageConfig(iters=0),
    )
    for views, moves in ((2, False), (3, True)):
        image = torch.rand(views, 3, 224, 224, generator=torch.Generator().manual_seed(7))
        image = image.to(model.mean_shape)
        lm = model.mean_shape.new_zeros(views, 68, 2) + 112
        target = FitTarget(image, lm, attention=torch.ones_like(image[:, :1]))
        coeffs = fit(model, target, cfg).coeffs
        id_coeff = model.layout.split(coeffs)["id_coeff"]
        assert bool(id_coeff.abs().max() > 0) is moves

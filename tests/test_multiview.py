"""Multi-view methods (mvfit, mvr, mvr-auto) and ``reconstruct --views``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from facerecon.fit import FitConfig, FitTarget, StageConfig


@pytest.fixture(scope="module")
def triple(model):
    from facerecon.data.synthetic import SynthConfig, SyntheticFaces
    from facerecon.detect import align

    faces = SyntheticFaces(model, SynthConfig(clean=True, background="flat"), seed=11)
    views = faces.triple(2, yaws_deg=(-40.0, 0.0, 40.0))
    al = [align(np.asarray(v.image), np.asarray(v.lm68)) for v in views]
    image = torch.from_numpy(np.stack([a.image for a in al])).permute(0, 3, 1, 2) / 255.0
    lm = torch.from_numpy(np.stack([a.lm68 for a in al]))
    target = FitTarget(image.to(model.mean_shape), lm.to(model.mean_shape))
    return views, target


def _rmse_to_truth(model, coeffs, sample) -> float:
    """Front-region RMSE (mm) after a similarity alignment (same mesh: vertex to vertex)."""
    from facerecon.geometry import umeyama

    parts = model.layout.split(coeffs)
    with torch.no_grad():
        v = model.shape(parts["id_coeff"][:1], parts["exp_coeff"][:1])[0].double().numpy()
    front = model.front_mask.cpu().numpy()
    gt = np.asarray(sample.vertices_model, np.float64)[front]
    sim = umeyama(v[front], gt)
    moved = sim.apply(v[front])
    return float(np.sqrt(((moved - gt) ** 2).sum(1).mean()))


def test_multiview_fit_shares_identity_and_expression_and_uses_every_view(model, triple):
    from facerecon.methods.multiview import MultiViewFitMethod

    views, target = triple
    cfg = dataclasses.replace(
        FitConfig.fast(), coarse=StageConfig(iters=10, size=112), fine=StageConfig(iters=0)
    )
    est = MultiViewFitMethod(model, cfg)(target)
    parts = model.layout.split(est.coeffs)
    for key in ("id_coeff", "exp_coeff"):
        assert torch.equal(parts[key][0], parts[key][1])
        assert torch.equal(parts[key][1], parts[key][2])
    yaws = torch.rad2deg(parts["angles"][:, 1])
    assert float(yaws[0]) < -25 and abs(float(yaws[1])) < 10 and float(yaws[2]) > 25
    err3 = _rmse_to_truth(model, est.coeffs, views[1])
    mean = _rmse_to_truth(model, torch.zeros(1, model.layout.size), views[1])
    assert err3 < 0.8 * mean


def test_mvr_method_puts_views_into_slots_by_yaw_and_answers_in_input_order(model, triple):
    from facerecon.methods.multiview import MVRMethod
    from facerecon.nets.mvr import MVRConfig, MVRNet

    _, target = triple
    lay = model.layout
    cfg = MVRConfig(lay.n_id, lay.n_exp, lay.n_tex, width_mult=1 / 16, fused_channels=16,
                    rednet_depths=(1, 1, 1, 1), rednet_width=0.25, input_size=32)  # fmt: skip
    net = MVRNet(cfg).eval()
    with torch.no_grad():  # slot s predicts angles[0] = s (a label of the slot)
        bias = torch.zeros(3, 33)
        bias[:, 0] = torch.arange(3.0)
        net.view_head.bias.copy_(bias.flatten())
    order = [2, 0, 1]  # right, left, front
    shuffled = FitTarget(target.image[order], target.lm68[order])
    est = MVRMethod(model, net)(shuffled)
    assert est.coeffs.shape == (3, lay.size)
    slots = lay.split(est.coeffs)["angles"][:, 0].round().long().tolist()
    assert slots == [2, 0, 1]
    two = MVRMethod(model, net)(FitTarget(target.image[[1, 2]], target.lm68[[1, 2]]))
    assert lay.split(two.coeffs)["angles"][:, 0].round().long().tolist() == [1, 2]
    with pytest.raises(Exception, match="1 to 3 views"):
        MVRMethod(model, net)(FitTarget(target.image[[0, 1, 2, 0]], target.lm68[[0, 1, 2, 0]]))


def test_registry_lists_the_multiview_methods():
    from facerecon.methods import method_names, multiview_methods

    assert {"mvfit", "mvr", "mvr-auto"} <= set(method_names())
    assert set(multiview_methods()) == {"mvfit", "mvr", "mvr-auto"}


def test_views_default_method(tmp_path):
    from facerecon.pipeline import ReconstructOptions, resolve_options

    opts = resolve_options(ReconstructOptions(views=True, shipped=False))
    assert opts.method == "mvfit" and opts.as_set
    shipped = resolve_options(ReconstructOptions(views=True))
    assert shipped.method == "mvfit" and shipped.mvr_weights is not None  # the best measured
    given = resolve_options(
        ReconstructOptions(views=True, method="mvr-auto", mvr_weights=tmp_path / "m.pt")
    )
    assert given.method == "mvr-auto" and given.mvr_weights == tmp_path / "m.pt"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["a.jpg", "--views", "b.jpg"], "not both"),
        (["--views", "a.jpg", "b.jpg", "c.jpg", "d.jpg"], "1 to 3 photos"),
        ([], "neither"),
    ],
)
def test_views_usage_errors(argv, message, capsys, tmp_path):
    from facerecon.cli import main

    assert main(["reconstruct", *argv, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_prepare_views_orders_each_folder_by_yaw(tmp_path, model):
    import cv2

    from facerecon.data.prepared import main_prepare
    from facerecon.data.synthetic import SynthConfig, SyntheticFaces
    from facerecon.data.view_triples import ViewTripleDataset

    faces = SyntheticFaces(model, SynthConfig(albedo="photo", clean=True), seed=5)
    src = tmp_path / "captures"
    (src / "person_a").mkdir(parents=True)
    views = faces.triple(1, (30.0, -30.0, 0.0))
    for name, view in zip(("c.jpg", "a.jpg", "b.jpg"), views, strict=True):
        cv2.imwrite(str(src / "person_a" / name), np.ascontiguousarray(view.image[..., ::-1]))
    (src / "nobody").mkdir()
    cv2.imwrite(str(src / "nobody" / "x.png"), np.full((120, 120, 3), 128, np.uint8))
    out = tmp_path / "triples"
    assert main_prepare([str(src), str(out), "--views", "--quiet"]) == 0
    item = ViewTripleDataset(out)[0]
    assert bool(item["present"].all()) and not bool(item["has_3d"])
    yaw = item["yaw"].tolist()
    assert yaw[0] < -15 and abs(yaw[1]) < 12 and yaw[2] > 15
    assert sorted(p.name for p in out.glob("*.npz")) == ["person_a.npz"]
    # a flat folder is the wrong layout: one clear line, exit 2 (a usage error)
    flat = tmp_path / "flat"
    flat.mkdir()
    cv2.imwrite(str(flat / "x.png"), np.full((50, 50, 3), 128, np.uint8))
    assert main_prepare([str(flat), str(tmp_path / "o2"), "--views"]) == 2


def test_api_views_share_the_face(model):
    from facerecon.data.synthetic import SynthConfig, SyntheticFaces
    from facerecon.pipeline import reconstruct

    faces = SyntheticFaces(model, SynthConfig(albedo="photo", clean=True), seed=6)
    photos = [np.asarray(v.image) for v in faces.triple(0, (0.0, 25.0, -25.0))]
    recs = reconstruct(photos, views=True, method="mvfit", fast=True)
    assert [r.method for r in recs] == ["mvfit"] * 3
    for key in ("id_coeff", "exp_coeff"):
        assert np.array_equal(recs[0].parts[key], recs[1].parts[key])
        assert np.array_equal(recs[1].parts[key], recs[2].parts[key])
    assert not np.array_equal(recs[0].parts["angles"], recs[1].parts["angles"])
    # the fitted landmarks stay within 4 % of the 256 px photo of each view's detection (with
    # one expression for all views; measured 3.9 / 5.7 / 8.1 px)
    assert all(r.landmark_error_px < 0.04 * 256 for r in recs)


def test_multiview_fit_shares_one_shape_held_to_the_prior_once():
    """One photo's fit lets its photometric term move the shape; the joint multi-view fit
    moves it through the cross-view term only (tests/test_cross_view.py), with one identity
    and expression held to the prior once."""
    from facerecon.fit import FitConfig
    from facerecon.methods.multiview import multiview_config

    single = FitConfig()
    assert single.coarse.frozen == () and single.fine.frozen == ()
    joint = multiview_config(single)
    assert not joint.coarse.photo_shape and not joint.fine.photo_shape
    assert (joint.shared_identity, joint.shared_expression, joint.shared_prior) == (
        True, True, "map",
    )  # fmt: skip
    assert joint.coarse.iters == single.coarse.iters and single.coarse.photo_shape

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


@pytest.mark.slow
def test_multiview_benchmark_rows_and_true_landmark_diagnostic():
    """The multi-view benchmark (``facerecon.evaluate.multiview``) accounts for every triple
    of every row, and its diagnostic row on the renders' true landmarks runs every view (no
    detector can miss one) and beats the average face with three views at +-30 degrees."""
    from facerecon.evaluate.multiview import (
        TRUE_MVFIT,
        MultiviewBenchmarkConfig,
        run_multiview_benchmark,
    )

    cfg = MultiviewBenchmarkConfig(
        spreads_deg=(30.0,), n_triples=1, views=(3,), methods=("mean-face", "mvfit"),
        fast=True, albedo="model", true_landmarks=True,
    )  # fmt: skip
    res = run_multiview_benchmark(cfg)
    assert set(res["summary"][30.0]) == {3}
    cell = res["summary"][30.0][3]
    assert set(cell) == {"mean-face", "mvfit", TRUE_MVFIT}
    for name, m in cell.items():
        assert m["n"] + m["failures"] == 1, name
    assert cell[TRUE_MVFIT]["n"] == 1 and cell["mean-face"]["n"] == 1
    print({name: round(m["rmse"], 3) for name, m in cell.items()})
    assert cell[TRUE_MVFIT]["rmse"] < 0.9 * cell["mean-face"]["rmse"]
    assert set(res["seconds_per_call"]) == {"mvfit", TRUE_MVFIT}


def test_pgn_poses_the_side_views_and_replaces_their_landmarks(model, triple):
    """:func:`pose_guided_views`: views the shipped PGN reads as turned past ``side_yaw`` get
    its pose (within 6 degrees of the render's on these +-40 views) and its 2D points, on the
    model's vertices at the side weight, in place of every detector's; the front view and the
    starting shape are left alone, and with no view past ``side_yaw`` nothing changes."""
    from facerecon.methods import MethodSpec
    from facerecon.methods.multiview import (
        PGN_LANDMARKS,
        SIDE_LANDMARK_WEIGHT,
        load_pgn_if_any,
        pose_guided_views,
    )

    views, target = triple
    pgn = load_pgn_if_any(MethodSpec(), model)
    assert pgn is not None  # PGN weights ship for bfm-lite
    # --no-shipped-weights: no PGN unless the user names one
    from facerecon.nets.shipped import shipped_weights
    from facerecon.pipeline import ReconstructOptions, method_spec

    assert load_pgn_if_any(MethodSpec(shipped=False), model) is None
    named = MethodSpec(shipped=False, pgn_weights=shipped_weights("pgn", "bfm-lite"))
    assert load_pgn_if_any(named, model) is not None
    assert method_spec(ReconstructOptions(shipped=False)).shipped is False
    more = (("mediapipe", target.lm68.clone()),)
    target = dataclasses.replace(target, detector="dlib hog", more_lm68=more)
    same, init = pose_guided_views(model, pgn, target)  # +-40: no side view past 45
    assert same is target and init is None

    guided, init = pose_guided_views(model, pgn, target, side_yaw=30.0)
    assert guided.detector == (PGN_LANDMARKS, "dlib hog", PGN_LANDMARKS)
    side = torch.tensor([True, False, True])
    assert torch.equal(guided.lm68[1], target.lm68[1])
    assert not torch.equal(guided.lm68[0], target.lm68[0])
    assert torch.all(guided.lm_valid[side] == SIDE_LANDMARK_WEIGHT)
    assert torch.all(guided.lm_valid[1] == 1.0)
    alt = guided.more_lm68[0][1]
    assert torch.isnan(alt[side]).all() and torch.equal(alt[1], target.lm68[1])
    parts = model.layout.split(init)
    assert torch.all(parts["id_coeff"] == 0) and torch.all(parts["exp_coeff"] == 0)
    yaws = torch.rad2deg(parts["angles"][:, 1])
    truth = [float(np.rad2deg(v.coeffs["angles"][1])) for v in views]
    assert torch.allclose(yaws.double(), torch.tensor(truth, dtype=torch.float64), atol=6.0)
    # the PGN's points of a side view lie near the render's landmarks (mean < 15 % of the
    # eye-corner distance; the side weight keeps them an anchor for the pose)
    lm = target.lm68[0]
    iod = float(torch.linalg.norm(lm[36] - lm[45]))
    err = torch.linalg.norm(guided.lm68[0] - lm, dim=-1).mean() / iod
    assert float(err) < 0.15

    start = torch.randn(3, model.layout.size, dtype=target.lm68.dtype)
    _, kept = pose_guided_views(model, pgn, target, init=start, side_yaw=30.0)
    got, want = model.layout.split(kept), model.layout.split(start)
    assert torch.equal(got["id_coeff"], want["id_coeff"])
    assert torch.equal(got["angles"][1], want["angles"][1])
    assert torch.equal(got["angles"][0], parts["angles"][0])


def test_views_say_which_view_the_pgn_posed(tmp_path, monkeypatch, model):
    """``reconstruct --views``: a side view the PGN posed says so in ``summary.json``, the
    npz, ``NAME_landmarks.json`` and the report, and its overlay shows the PGN's points (the
    ones fitted) in yellow and the detector's (not used) in grey; the front view's does not
    (``SIDE_YAW_DEG`` lowered to 30 so that these +-40 renders count as side views)."""
    import json

    import cv2

    from facerecon.cli import main
    from facerecon.data.synthetic import SynthConfig, SyntheticFaces
    from facerecon.methods import multiview

    monkeypatch.setattr(multiview, "SIDE_YAW_DEG", 30.0)
    faces = SyntheticFaces(model, SynthConfig(albedo="photo", clean=True), seed=11)
    paths = []
    for name, view in zip(("right", "front", "left"), faces.triple(2, (-40.0, 0.0, 40.0)),
                          strict=True):  # fmt: skip
        paths.append(tmp_path / f"{name}.png")
        cv2.imwrite(str(paths[-1]), np.ascontiguousarray(np.asarray(view.image)[..., ::-1]))
    out = tmp_path / "o"
    argv = ["reconstruct", "--views", *map(str, paths), "--out", str(out), "--fast",
            "--outputs", "npz,overlay,landmarks", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    posed = {e["name"]: e.get("fit_landmarks") for e in summary["written"]}
    assert posed == {"right": "pgn", "front": None, "left": "pgn"}
    # the landmark error is against the points the fit used: within 5 % of the 256 px photo
    assert all(e["landmark_error_px"] < 0.05 * 256 for e in summary["written"])
    report = (out / "report.html").read_text()
    assert report.count("landmarks fitted") == 2
    for name in ("right", "front", "left"):
        side = name != "front"
        with np.load(out / f"{name}.npz", allow_pickle=False) as z:
            assert ("fit_landmarks68" in z.files) == side
            if side:  # the PGN's points lie on the face: within 25 % of the IOD of dlib's
                fit, det = z["fit_landmarks68"], z["detected_landmarks68"]
                iod = np.linalg.norm(det[36] - det[45])
                assert np.linalg.norm(fit - det, axis=1).mean() < 0.25 * iod
                assert np.isfinite(fit).all()
        marks = json.loads((out / f"{name}_landmarks.json").read_text())
        assert ("fit" in marks) == side and marks.get("fit_source") == ("pgn" if side else None)
        overlay = cv2.imread(str(out / f"{name}_overlay.png"))[..., ::-1].astype(int)
        yellow = ((overlay[..., 0] > 240) & (overlay[..., 1] > 240) & (overlay[..., 2] < 20)).sum()
        green = ((overlay[..., 0] < 20) & (overlay[..., 1] > 240) & (overlay[..., 2] < 20)).sum()
        assert (yellow > 50) == side and (green > 50) != side

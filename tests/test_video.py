"""Video: reading, tracking, smoothing, the animated GLB and a 2-second clip through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facerecon.errors import ImageError


@pytest.fixture(scope="module")
def clip(model, tmp_path_factory):
    """A 2-second synthetic clip (50 frames at 25 fps, 192 px) of a head turning +-40 degrees
    and talking, with its truth."""
    from facerecon.data.synthetic import SynthConfig, SyntheticFaces
    from facerecon.data.synthetic_video import write_synthetic_clip

    folder = tmp_path_factory.mktemp("clip")
    faces = SyntheticFaces(
        model,
        SynthConfig(image_size=192, occluder_prob=0.0, blur_prob=0.0, noise_prob=0.0),
        seed=11,
    )
    truth = write_synthetic_clip(folder / "turn.mp4", faces, 4, 50, 25.0, max_yaw_deg=40.0)
    return folder / "turn.mp4", truth


def test_read_frames_counts_and_resamples(clip):
    from facerecon.io.video import probe_video, read_frames

    path, _ = clip
    info = probe_video(path)
    assert (info.frames, info.width, info.height) == (50, 192, 192) and info.fps == 25.0
    frames = list(read_frames(path))
    assert len(frames) == 50 and frames[0].image.shape == (192, 192, 3)
    assert frames[0].image.dtype == np.uint8 and frames[10].time == pytest.approx(0.4)
    every_5th = [f.index for f in read_frames(path, fps=5)]
    assert every_5th == list(range(0, 50, 5))
    from facerecon.clip import _kept_rate

    ten = [f.time for f in read_frames(path, fps=10)]  # 2.5 source frames per kept frame
    assert len(ten) == 20 and _kept_rate(25.0, 10.0) == pytest.approx(len(ten) / 2.0)
    assert len(list(read_frames(path, max_frames=7))) == 7


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 50, b"\x00" * 4096])
def test_bad_video_is_a_one_line_error(tmp_path, content):
    from facerecon.io.video import read_frames

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(ImageError) as err:
        list(read_frames(bad))
    assert "\n" not in str(err.value) and "bad.mp4" in str(err.value)


def test_zero_frame_video_is_a_one_line_error(tmp_path):
    from facerecon.io.video import VideoWriter, read_frames

    path = tmp_path / "empty.mp4"
    VideoWriter(path, 25.0, (64, 64)).close()  # a valid container without frames
    with pytest.raises(ImageError, match=r"(no decodable frame|cannot decode)"):
        list(read_frames(path))
    with pytest.raises(ImageError, match="not found"):
        list(read_frames(tmp_path / "missing.mp4"))


def test_local_poly_smooth_is_weighted_least_squares_and_keeps_quadratics():
    from facerecon.temporal import local_poly_smooth

    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3))
    x[[0, 7, 8, 20]] = np.nan
    sigma = 3.0
    out = local_poly_smooth(x, sigma)
    have = np.isfinite(x).all(1)
    for t in np.flatnonzero(have):  # the constant term of a weighted quadratic fit
        idx = np.flatnonzero(have & (np.abs(np.arange(40) - t) <= 9))
        d = (idx - t).astype(float)
        w = np.sqrt(np.exp(-0.5 * (d / sigma) ** 2))[:, None]
        beta = np.linalg.lstsq(np.vander(d, 3, increasing=True) * w, x[idx] * w, rcond=None)[0]
        np.testing.assert_allclose(out[t], beta[0], atol=1e-9)
    assert np.isnan(out[~have]).all()
    # a head turning with constant acceleration passes through, up to the clip's ends
    t = np.arange(60.0)[:, None]
    turn = 0.02 * t**2 - 1.5 * t + 3.0
    np.testing.assert_allclose(local_poly_smooth(turn, 4.0), turn, atol=1e-8)
    # one frame between gaps: too few neighbours for a quadratic, the degree drops
    lone = np.full((9, 1), np.nan)
    lone[4] = 2.0
    lone[0] = 1.0
    assert local_poly_smooth(lone, 2.0)[4, 0] == pytest.approx(2.0, abs=0.05)


def test_smoothers_remove_noise_and_keep_gaps():
    from facerecon.temporal import gaussian_smooth, local_poly_smooth, one_euro, smooth_track

    t = np.arange(200) / 25.0
    clean = np.stack([np.sin(t), 0.5 * np.cos(2 * t)], 1)
    noisy = clean + np.random.default_rng(0).normal(0, 0.05, clean.shape)
    noisy[50:53] = np.nan
    # local quadratics average over a wider window at the same bias: below the Gaussian's error
    smoothed = {"gaussian": gaussian_smooth(noisy, 1.5), "one-euro": one_euro(noisy, 25.0),
                "poly": local_poly_smooth(noisy, 4.0)}  # fmt: skip
    for name, gain in (("gaussian", 0.6), ("one-euro", 0.85), ("poly", 0.45)):
        out = smoothed[name]
        ok = np.isfinite(out).all(1)
        assert np.isnan(out[50:53]).all() and ok.sum() == 197
        err = np.abs(out[ok] - clean[ok]).mean()
        assert err < gain * np.abs(noisy[ok] - clean[ok]).mean(), (name, err)
    assert np.array_equal(smooth_track(noisy, "poly", 25.0), smoothed["poly"], equal_nan=True)
    const = np.full((30, 3), 2.5)
    assert np.allclose(gaussian_smooth(const, 3.0), const)
    # a kernel wider than the clip (sigma 12, 5 frames) still gives one row per frame
    short = np.stack([np.arange(5.0), np.full(5, 2.0)], 1)
    wide = gaussian_smooth(short, 12.0)
    assert wide.shape == (5, 2) and np.allclose(wide[:, 1], 2.0)
    assert np.allclose(wide[:, 0], 2.0, atol=0.05) and np.all(np.diff(wide[:, 0]) > 0)
    assert np.allclose(one_euro(const, 30.0), const)
    assert np.array_equal(smooth_track(noisy, "none", 25.0), noisy, equal_nan=True)
    with pytest.raises(ValueError):
        smooth_track(noisy, "kalman", 25.0)


def test_tracker_follows_the_clip(clip):
    from facerecon.clip import clip_detector
    from facerecon.detect.track import FaceTracker
    from facerecon.io.video import read_frames

    path, truth = clip
    tracker = FaceTracker(clip_detector("auto"))
    res = [tracker.update(f.image) for f in read_frames(path)]
    status = [r.status for r in res]
    assert status[0] == "detected" and status.count("tracked") >= 40 and "lost" not in status
    lm = np.stack([r.lm68 for r in res])
    iod = np.linalg.norm(truth["lm68"][:, 36] - truth["lm68"][:, 45], axis=1)
    inner = np.linalg.norm(lm[:, 17:] - truth["lm68"][:, 17:], axis=-1).mean(-1) / iod
    assert np.median(inner) < 0.12, np.median(inner)


def test_expression_targets_and_quaternions_replay_the_clip(model):
    from facerecon.clip import expression_targets, matrix_to_quaternion
    from facerecon.geometry import euler_matrix

    basis = model.exp_basis.cpu().numpy().astype(np.float64)
    exp = np.random.default_rng(0).normal(0, 1, (7, basis.shape[-1]))
    targets, weights = expression_targets(basis, exp)
    assert np.abs(weights).max() <= 1 + 1e-9
    assert np.allclose(
        np.einsum("ft,tnc->fnc", weights, targets), np.einsum("nck,fk->fnc", basis, exp)
    )
    few, w_few = expression_targets(basis, exp, max_targets=3)
    assert few.shape[0] == 3 and w_few.shape == (7, 3)
    angles = np.random.default_rng(1).uniform(-1.2, 1.2, (20, 3))
    R = np.stack([euler_matrix(a) for a in angles])
    q = matrix_to_quaternion(R)
    x, y, z, w = q.T
    back = np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        1,
    )
    assert np.allclose(back, R, atol=1e-9)


def test_animated_glb_is_valid_gltf(tmp_path):
    from facerecon.io import MeshAnimation, parse_glb, read_glb, write_glb
    from facerecon.io.mesh import _accessor

    v = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10.0]])
    f = np.array([[0, 1, 2], [0, 2, 3]])
    anim = MeshAnimation(
        times=np.arange(5) / 25.0,
        targets=np.ones((2, 4, 3)),
        weights=np.linspace(-1, 1, 10).reshape(5, 2),
        rotations=np.tile([0.0, 0.0, 0.0, 1.0], (5, 1)),
        translations=np.zeros((5, 3)),
    )
    path = write_glb(tmp_path / "a.glb", v, f, animation=anim)
    doc, binary = parse_glb(path.read_bytes())
    prim = doc["meshes"][0]["primitives"][0]
    assert len(prim["targets"]) == 2 and doc["meshes"][0]["weights"] == [0.0, 0.0]
    (clip_doc,) = doc["animations"]
    paths = sorted(c["target"]["path"] for c in clip_doc["channels"])
    assert paths == ["rotation", "translation", "weights"]
    times = _accessor(doc, binary, clip_doc["samplers"][0]["input"])
    assert np.allclose(times[:, 0], np.arange(5) / 25.0)
    w = _accessor(doc, binary, clip_doc["samplers"][0]["output"])
    assert w.shape == (10, 1) and np.allclose(w[:, 0], np.linspace(-1, 1, 10))
    assert np.allclose(_accessor(doc, binary, prim["targets"][0]["POSITION"]), 1e-3)
    assert np.allclose(read_glb(path).vertices, v)  # still a plain mesh for other readers
    with pytest.raises(ValueError, match="increasing"):
        write_glb(
            tmp_path / "b.glb",
            v,
            f,
            animation=MeshAnimation(np.zeros(3), np.zeros((0, 4, 3)), np.zeros((3, 0))),
        )


def test_cli_reconstructs_a_two_second_clip(clip, tmp_path, model):
    from facerecon.cli import main
    from facerecon.io import parse_glb
    from facerecon.io.video import probe_video

    path, truth = clip
    out = tmp_path / "out"
    assert main(["reconstruct", str(path), "--out", str(out), "--method", "rnet", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == [] and summary["written"][0]["frames"] == 50
    record = json.loads((out / "turn_clip.json").read_text())
    assert len(record["per_frame"]) == 50 and record["frames_with_face"] == 50
    assert {p["status"] for p in record["per_frame"]} <= {"detected", "tracked"}
    with np.load(out / "turn_frames.npz") as z:
        coeffs, raw = z["coeffs"], z["coeffs_raw"]
        assert coeffs.shape == (50, model.layout.size) and np.isfinite(coeffs).all()
        sl = model.layout.slices()["id_coeff"]
        assert np.ptp(coeffs[:, sl], axis=0).max() < 1e-9  # one identity for the clip
        assert np.ptp(raw[:, sl], axis=0).max() > 1e-4  # per-frame estimates differ
        yaw = np.rad2deg(coeffs[:, model.layout.slices()["angles"]][:, 1])
    true_yaw = np.rad2deg(truth["angles"][:, 1])
    assert np.corrcoef(yaw, true_yaw)[0, 1] > 0.9
    assert record["jitter"]["angles_deg"] < record["jitter"]["raw_angles_deg"]
    doc, _ = parse_glb((out / "turn_anim.glb").read_bytes())
    assert doc["animations"][0]["channels"] and (out / "turn_neutral.obj").is_file()
    info = probe_video(out / "turn_overlay.mp4")
    assert info.frames == 50 and (info.width, info.height) == (192, 192)
    assert (out / "report.html").is_file()
    # existing outputs are never overwritten silently; a corrupt clip fails with one line
    assert main(["reconstruct", str(path), "--out", str(out), "--method", "rnet", "--quiet"]) == 2
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"junk" * 100)
    assert main(["reconstruct", str(bad), "--out", str(tmp_path / "o2"), "--quiet"]) == 1
    failed = json.loads((tmp_path / "o2" / "summary.json").read_text())["failed"]
    assert len(failed) == 1 and "cannot decode" in failed[0][1]


def test_pgn_method_is_registered(model):
    from facerecon.methods import method_class, method_names

    assert "pgn" in method_names() and method_class("pgn").uses_rnet is False
    assert torch.is_tensor(model.mean_shape)


def test_temporal_term_penalises_jitter_not_steady_motion():
    from facerecon.fit import FitConfig
    from facerecon.losses import temporal_smoothness

    t = torch.arange(10, dtype=torch.float64)[:, None]
    steady = temporal_smoothness(
        0.1 * t.expand(-1, 4), 0.02 * t.expand(-1, 3), 0.01 * t.expand(-1, 3)
    )
    assert float(steady) == pytest.approx(0.0, abs=1e-20)
    exp = (0.1 * t.expand(-1, 4)).clone().requires_grad_(True)
    angles = torch.zeros(10, 3, dtype=torch.float64)
    angles[5, 1] = np.deg2rad(1.0)  # one frame off by a degree
    trans = torch.zeros(10, 3, dtype=torch.float64, requires_grad=True)
    jit = temporal_smoothness(exp, angles, trans)
    assert float(jit.detach()) == pytest.approx((1 + 4 + 1) / 8, rel=1e-9)  # dd = 1, -2, 1 deg
    assert torch.autograd.gradcheck(temporal_smoothness, (exp, angles.requires_grad_(True), trans))
    cfg = FitConfig.fast().video(2e-3)
    assert cfg.shared_identity and cfg.loss.extra["temporal"] == 2e-3
    assert "temporal" not in FitConfig.fast().loss.extra


def test_video_scores_of_the_truth_are_zero(model):
    """The synthetic clips' truth scored as an estimate: no landmark error and no jitter, also
    where the head is turned far (the scored landmarks are the truth's 68 fixed vertices)."""
    from facerecon.evaluate.video import score_clip
    from facerecon.render import CameraConfig, project, transform

    rng = np.random.default_rng(5)
    lay = model.layout
    sl = lay.slices()
    F = 6
    coeffs = np.zeros((F, lay.size))
    id_coeff = rng.normal(0, 0.5, lay.n_id)
    coeffs[:, sl["id_coeff"]] = id_coeff
    coeffs[:, sl["exp_coeff"]] = rng.normal(0, 0.3, (F, lay.n_exp))
    coeffs[:, sl["angles"]] = np.stack([np.zeros(F), np.linspace(-1.0, 1.0, F), np.zeros(F)], 1)
    coeffs[:, sl["trans"]] = rng.normal(0, 0.05, (F, 3))
    crops = np.tile(np.array([[2.0, 0.0, 40.0], [0.0, 2.0, 25.0]]), (F, 1, 1))
    crops[:, :, 2] += rng.normal(0, 3, (F, 2))
    c = torch.from_numpy(coeffs).to(model.mean_shape)
    parts = lay.split(c)
    with torch.no_grad():
        v = model.shape(parts["id_coeff"], parts["exp_coeff"])
        uv, _ = project(
            transform(v[:, model.landmarks68], parts["angles"], parts["trans"]), CameraConfig()
        )
        neutral = model.shape(parts["id_coeff"][:1], parts["exp_coeff"][:1] * 0)[0]
    uv = uv.cpu().double().numpy()
    truth = {
        "angles": coeffs[:, sl["angles"]],
        "lm68": np.einsum("fij,fkj->fki", crops[:, :, :2], uv) + crops[:, None, :, 2],
        "neutral": neutral.cpu().double().numpy(),
        "id_coeff": id_coeff,
        "exp_coeff": coeffs[:, sl["exp_coeff"]],
    }
    s = score_clip(model, coeffs, crops, truth, shape_every=F)
    assert s["nme"] < 1e-6 and s["pos_jitter_mm"] < 1e-4 and s["rot_jitter_deg"] < 1e-3, s
    assert s["rot_deg"] < 1e-3 and s["id_spread_mm"] < 1e-4 and s["shape_mm"] < 1e-3, s

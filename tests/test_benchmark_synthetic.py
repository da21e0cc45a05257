"""synthetic-ict benchmark: the MediaPipe peer mesh, summaries and the quick run's numbers."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest

from facerecon.evaluate.benchmark import (
    SyntheticBenchmarkConfig,
    run_synthetic_benchmark,
    summarize,
)
from facerecon.evaluate.peers import (
    N_MESH_TRIANGLES,
    mediapipe_triangles,
    orient_consistently,
    outward,
    triangles_from_edges,
)

# Joint fit of an identity's set vs the mean of its single-image errors: allowed to be worse by
_SET_MARGIN_MM = 0.3


def _edges(triangles) -> list[tuple[int, int]]:
    return [e for t in triangles for e in itertools.combinations(t, 2)]


def test_triangles_from_edges_drops_separating_triangle():
    # a fan of 3 triangles around vertex 3 inside (0, 1, 2), and one face outside each of its
    # edges: (0, 1, 2) is a 3-clique of the edge graph whose edges all bound two faces already,
    # so it is a separating triangle, not a face
    faces = [(0, 1, 3), (1, 2, 3), (0, 2, 3), (0, 1, 4), (1, 2, 5), (0, 2, 6)]
    tri = triangles_from_edges(_edges(faces))
    assert sorted(map(tuple, tri)) == sorted(faces)
    # on the bare fan the outer edges are boundary edges: (0, 1, 2) closes it (a tetrahedron)
    assert len(triangles_from_edges(_edges(faces[:3]))) == 4


def test_mediapipe_tessellation_is_a_consistently_oriented_manifold():
    tri = mediapipe_triangles()
    assert tri.shape == (N_MESH_TRIANGLES, 3) == (852, 3)
    assert tri.min() == 0 and tri.max() == 467
    directed = Counter((int(t[i]), int(t[(i + 1) % 3])) for t in tri for i in range(3))
    assert max(directed.values()) == 1  # shared edges run in opposite directions
    undirected = Counter(tuple(sorted(e)) for e in directed)
    assert max(undirected.values()) == 2
    # Euler characteristic of a disc with three holes (two eyes, mouth): V - E + F = -2
    assert 468 - len(undirected) + len(tri) == -2


def test_orient_consistently_and_outward_on_a_flipped_strip():
    tri = np.array([[0, 1, 2], [1, 3, 2], [2, 3, 4]])
    tri[1] = tri[1][[0, 2, 1]]  # break the orientation of the middle face
    fixed = orient_consistently(tri)
    directed = Counter((int(t[i]), int(t[(i + 1) % 3])) for t in fixed for i in range(3))
    assert max(directed.values()) == 1
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 2, 0]], float)
    out = outward(v, fixed)
    n = np.cross(v[out[:, 1]] - v[out[:, 0]], v[out[:, 2]] - v[out[:, 0]])
    assert np.all(n[:, 2] > 0)


def test_summarize_counts_failures_and_regions():
    recs = [
        {
            "section": "single",
            "method": "a",
            "rmse": 1.0,
            "failed": False,
            "per_region": {"nose": 2.0},
        },
        {
            "section": "single",
            "method": "a",
            "rmse": 3.0,
            "failed": False,
            "per_region": {"nose": 4.0},
        },
        {"section": "single", "method": "a", "rmse": math.nan, "failed": True, "per_region": {}},
    ]
    s = summarize(recs)["single"]["a"]
    assert s["mean"] == pytest.approx(2.0) and s["std"] == pytest.approx(1.0)
    assert (s["n"], s["failures"]) == (2, 1)
    assert s["per_region"] == {"nose": pytest.approx(3.0)}


def test_summary_pairs_each_method_with_the_mean_face_on_its_own_renders():
    """A method that misses the hardest render is compared with the mean face on the renders
    it did reconstruct: here 1.5 mm is worse than the mean face's 1.0 mm on those two, though
    below its 2.0 mm over all three."""
    from facerecon.evaluate.benchmark import sanity_notes

    def rec(method, cond, rmse, failed=False, sec="by_yaw"):
        return {"section": sec, "method": method, "identity": 0, "condition": cond,
                "rmse": rmse, "failed": failed, "per_region": {}}  # fmt: skip

    recs = [rec("mean-face |yaw| 0-15", c, v) for c, v in enumerate((1.0, 1.0, 4.0))]
    recs += [rec("auto |yaw| 0-15", 0, 1.4), rec("auto |yaw| 0-15", 1, 1.6),
             rec("auto |yaw| 0-15", 2, math.nan, failed=True)]  # fmt: skip
    summary = summarize(recs)
    auto = summary["by_yaw"]["auto |yaw| 0-15"]
    assert auto["mean"] == pytest.approx(1.5)
    assert summary["by_yaw"]["mean-face |yaw| 0-15"]["mean"] == pytest.approx(2.0)
    assert auto["mean_face_same"] == pytest.approx(1.0) and auto["n_paired"] == 2
    assert auto["vs_mean_face"] == pytest.approx(1.5)
    notes = sanity_notes(summary)
    assert len(notes) == 1 and "on the same 2 renders" in notes[0]
    # found on every render and better there: no note
    recs[-1] = rec("auto |yaw| 0-15", 2, 2.5)
    assert sanity_notes(summarize(recs)) == []


@pytest.fixture(scope="module")
def quick_result(ict_npz):
    if not ict_npz.is_file():
        pytest.skip(f"{ict_npz} not found")
    cfg = SyntheticBenchmarkConfig(gt_model=str(ict_npz), quick=True)
    out = run_synthetic_benchmark(cfg)
    if "skipped" in out:
        pytest.skip(out["skipped"])
    return out


@pytest.mark.slow
def test_quick_benchmark_accounts_for_every_image(quick_result):
    n_id, n_cond, n_tri = SyntheticBenchmarkConfig(quick=True).sizes()
    single = quick_result["summary"]["single"]
    for name in ("fit", "mean-face", "mediapipe"):
        assert single[name]["n"] + single[name]["failures"] == n_id * n_cond, name
    assert single["mean-face"]["failures"] == 0
    found = single["fit"]["detected_by"]
    assert sum(found.values()) == single["fit"]["n"]
    assert single["fit"]["n"] >= n_id * n_cond // 2  # dlib, then MediaPipe, find most faces
    for stats in quick_result["summary"]["multiview"].values():
        assert stats["n"] + stats["failures"] == n_tri


@pytest.mark.slow
def test_quick_benchmark_numbers(quick_result):
    single = quick_result["summary"]["single"]
    sets = quick_result["summary"]["sets"]
    # MediaPipe's peer mesh was measured on most images, with finite, face-sized errors
    mp = single["mediapipe"]
    assert mp["n"] >= 0.75 * (mp["n"] + mp["failures"])
    assert 0.5 < mp["mean"] < 10.0
    # the protocol separates shapes: bfm-lite fitted to the GT in 3D beats the mean face
    oracle = sets["bfm-lite 3D oracle (fitted to the GT)"]["mean"]
    assert oracle < sets["mean-face"]["mean"] - 0.3
    # 1.47 (mean face 2.42) on the scanned surface of the truth (scanned_triangles: ICT's
    # nasal cavity, mouth and eye sockets, ~19 % of the crop, are not scored; with them the
    # oracle was 1.65 on bfm-lite v1, whose folded nostril triangles reached into the cavity,
    # and 3.04 on v2)
    assert 0.5 < oracle < 2.0
    # joint fit of each set is no worse than its mean single-image error + margin
    joint = sets["fit: joint fit"]["mean"]
    assert (
        joint <= sets["fit: single image (mean per identity, vs posed GT)"]["mean"] + _SET_MARGIN_MM
    )
    assert math.isfinite(single["fit"]["mean"]) and 0.5 < single["fit"]["mean"] < 10.0


@pytest.mark.slow
def test_quick_benchmark_fit_beats_mean_face(quick_result):
    """On synthetic ICT faces (a model the fit does not reconstruct with; photo-detail
    renders, the product's detector chain) the bfm-lite fit's posed shape beats the mean
    face's on the same renders (an xfail until the photometric stages moved the shape)."""
    recs = [r for r in quick_result["records"] if r["section"] == "single"]
    fit = {(r["identity"], r["condition"]): r["rmse"] for r in recs if r["method"] == "fit"}
    base = {(r["identity"], r["condition"]): r["rmse"] for r in recs if r["method"] == "mean-face"}
    paired = [(fit[k], base[k]) for k in fit if math.isfinite(fit[k])]
    f, b = np.mean([f for f, _ in paired]), np.mean([b for _, b in paired])
    print(f"ICT quick benchmark, {len(paired)} renders: fit {f:.3f} mm, mean face {b:.3f} mm")
    assert len(paired) >= 6
    assert f < b


def test_network_and_ablation_methods_plug_into_the_benchmark(ict_npz, tmp_path):
    """R-Net, auto (R-Net + refinement), the C-Net set rows and the Table-1 ablation rows of
    the fit run through the same detect -> align path and protocol; the refinement improves a
    poor (random, untrained) R-Net."""
    import torch

    from facerecon.morphable import load_face_model
    from facerecon.nets.cnet import CNet, save_cnet
    from facerecon.nets.rnet import RNet, save_rnet

    if not ict_npz.is_file():
        pytest.skip(f"{ict_npz} not found")
    torch.manual_seed(0)
    layout = load_face_model("bfm-lite").layout
    rnet = RNet(layout, "mobilenet_v2", width_mult=0.25, input_size=64)
    with torch.no_grad():  # a poor but non-trivial estimate: random shape, pose near zero
        rnet.head.bias[: layout.n_id].normal_(0, 1.5)
        rnet.head.bias[layout.n_id + layout.n_exp + layout.n_tex + 3 + 27 + 2] = -0.3
    cnet = CNet.for_rnet(rnet)
    cfg = SyntheticBenchmarkConfig(
        gt_model=str(ict_npz),
        quick=True,
        quick_identities=1,
        quick_conditions=2,
        quick_triples=0,
        methods=("fit", "mean-face"),
        ablation=True,
        rnet=str(save_rnet(rnet, tmp_path / "rnet.pt")),
        cnet=str(save_cnet(cnet, tmp_path / "cnet.pt")),
    )
    out = run_synthetic_benchmark(cfg)
    single, sets = out["summary"]["single"], out["summary"]["sets"]
    for name in ("rnet", "auto"):
        assert single[name]["n"] + single[name]["failures"] == 2
        assert single[name]["n"] >= 1 and 0.3 < single[name]["mean"] < 15.0
    # auto refines the estimate (that the refinement improves shape is shown on held-out renders
    # of the model itself in test_shipped_weights; on these ICT faces fitting the identity does
    # not beat the mean face, see README)
    assert single["auto"]["mean"] != pytest.approx(single["rnet"]["mean"], abs=1e-2)
    ablation = [k for k in single if k.startswith("fit ablation: ")]
    assert len(ablation) == 3
    for name in ablation:  # same detections as the fit: same successes
        assert single[name]["n"] == single["fit"]["n"] and 0.3 < single[name]["mean"] < 15.0
    # the rows differ in what they fit; the default fit is the last of them (landmarks and
    # the skin-attention photometric term on every parameter, no perceptual term)
    assert len({round(single[k]["mean"], 9) for k in ablation}) == 3
    full = single["fit ablation: landmarks + photo"]["mean"]
    assert full == pytest.approx(single["fit"]["mean"], abs=1e-9)
    assert set(out["seconds_per_image"]) == {"rnet", "auto"}
    names = {"rnet: shape averaging", *(f"rnet + cnet: S{k}" for k in range(1, 5))}
    names |= {"auto: shape averaging", "auto: joint refine", "auto + cnet S4: joint refine"}
    assert names <= set(sets)
    # the refined set rows start from the same (averaged) identity and move it
    joint = sets["auto: joint refine"]["mean"]
    assert sets["auto + cnet S4: joint refine"]["mean"] == pytest.approx(joint, abs=1e-4)
    assert joint != pytest.approx(sets["rnet: shape averaging"]["mean"], abs=1e-3)
    # a zero-initialised C-Net gives every image the same confidence: S1, S2 and S4 are
    # plain averaging of the R-Net identities
    avg = sets["rnet: shape averaging"]["mean"]
    for k in (1, 2, 4):
        assert sets[f"rnet + cnet: S{k}"]["mean"] == pytest.approx(avg, abs=1e-6)


@pytest.mark.slow
def test_bench_rows_stay_in_their_section(quick_result):
    """``make bench`` rows of synthetic-ict and synthetic-bfm-lite each keep their own section
    (a result's parts -- single, sets, multiview -- are row labels, not sections)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_synthetic.py"
    spec = importlib.util.spec_from_file_location("bench_synthetic", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for section in (mod.SECTION, "Accuracy: synthetic-bfm-lite (held out)"):
        rows = mod.rows_from_result(quick_result, section)
        assert len(rows) > 5 and {r["section"] for r in rows} == {section}
        assert any(r["name"].startswith("image set (vs neutral GT): ") for r in rows)


def test_true_landmarks_align_on_the_renders_truth():
    """The diagnostic rows' detections are the render's true landmarks: the crop's points are
    the truth mapped into the crop, no other detector is reported, and a landmark-only fit on
    them (the model's own vertices, no silhouette contour) reprojects onto them within a pixel
    on average."""
    import dataclasses

    import torch

    from facerecon.data.synthetic import SynthConfig, SyntheticFaces
    from facerecon.evaluate.benchmark import TrueLandmarks, true_landmark_methods
    from facerecon.fit import FitConfig, fitted_landmarks
    from facerecon.fit.config import StageConfig
    from facerecon.methods import FitMethod, crops_target
    from facerecon.morphable import load_face_model
    from facerecon.render import CameraConfig

    model = load_face_model("bfm-lite")
    engine = SyntheticFaces(model, SynthConfig(clean=True, max_yaw_deg=30.0), seed=3)
    sample = engine.sample(0, 0)
    truth = TrueLandmarks()
    face = truth.aligned(sample)
    assert truth.detector_of(sample) == "true landmarks" and truth.alt_of(sample) == {}
    # the same points, up to float32 rounding of pixel coordinates (sample.lm68 is float32;
    # 1.5e-5 px seen at x = 130 on one CPU)
    np.testing.assert_allclose(face.lm68, face.transform.to_crop(sample.lm68), atol=1e-4)
    cfg = dataclasses.replace(
        FitConfig(coarse=StageConfig(iters=0, size=112), fine=StageConfig(iters=0)),
        contour_landmarks=False,
    )
    target = crops_target([face], model.mean_shape, ("true landmarks",), [{}])
    coeffs = FitMethod(model, cfg)(target, False).coeffs
    parts = model.layout.split(coeffs)
    with torch.no_grad():
        vertices = model.shape(parts["id_coeff"], parts["exp_coeff"])
        lm = fitted_landmarks(model, vertices, parts["angles"], parts["trans"], CameraConfig(),
                              contour=False)[0].numpy()  # fmt: skip
    err = np.linalg.norm(lm - face.lm68, axis=1)
    assert err.mean() < 1.0, err.mean()
    rows = true_landmark_methods(model, FitConfig.fast())
    assert set(rows) == {"fit: true landmarks"}

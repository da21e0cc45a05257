"""What the 68 landmarks are worth to the fit on photo-like renders (``landmark_info``).

    python benchmarks/bench_landmark_info.py [--quick]

bfm-lite identities are rendered as in the realistic benchmark (photo-detail albedo, |yaw| <= 45,
pitch <= 20, roll <= 15 degrees, engine-default occluders / blur / noise / JPEG; seed 31, used
by no other benchmark, calibration or training set) and detected with the product's chain. On
the same faces the same landmark fit runs on different landmarks: the model's own landmark
vertices projected exactly ("true"), the same with Gaussian noise of 2 and 4 crop pixels per
coordinate (landmarks only, model-vertex definition, the identity / expression prior tuned per
noise level on other renders), and the detectors' points as the product fits them
(``FitConfig()`` with the shape kept from its landmark stage: calibrated surface points, noise
weights, MediaPipe's second opinion). The
identity is scored (neutral shape against the neutral truth, the synthetic benchmarks'
protocol) beside the average face, with the detectors' error against the true points. It
tells how far better landmarks alone would carry the fit, and how far the detectors are from
that on these renders.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

SECTION = "Identity evidence: landmarks and pixels (renders with known shape)"
SEED = 31
FULL = (8, 4)
QUICK = (2, 2)
PHOTO_FULL = (6, 2)
PHOTO_QUICK = (1, 1)


def _row(name: str, value: float, unit: str, notes: str) -> dict:
    return {"section": SECTION, "name": name, "value": value, "unit": unit, "notes": notes}


def collect(
    n_id: int, n_cond: int, albedo: str = "photo-detail", clean: bool = False
) -> list[dict]:
    """One record per render: true landmarks, detected ones (NaN where none), identity;
    ``albedo`` / ``clean``: the renders' :class:`SynthConfig` settings."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_realistic import texture_dir

    from facerecon.data.synthetic import SynthConfig, SyntheticFaces
    from facerecon.detect import DEFAULT_DETECTOR, align, detect_one, detector_for
    from facerecon.errors import FaceReconError
    from facerecon.morphable import load_face_model

    torch.set_num_threads(1)
    model = load_face_model("bfm-lite")
    synth = SynthConfig(
        max_yaw_deg=45.0, max_pitch_deg=20.0, max_roll_deg=15.0, albedo=albedo,
        texture_dir=texture_dir(), clean=clean,
    )  # fmt: skip
    engine = SyntheticFaces(model, synth, seed=SEED)
    det = detector_for(DEFAULT_DETECTOR)
    nan = np.full((68, 2), np.nan)
    out = []
    for i in range(n_id):
        for c in range(n_cond):
            s = engine.sample(i, c)
            rec = {"identity": i, "condition": c, "sample": None, "found": False}
            try:
                face = detect_one(s.image, detector_obj=det)
            except FaceReconError:
                out.append(rec)
                continue
            a = align(s.image, face.lm68)
            alt = face.alt_lm68.get("mediapipe")
            dlib = a.lm68 if (face.detector or "dlib").startswith("dlib") else nan
            mp = a.lm68 if face.detector == "mediapipe" else nan
            if alt is not None:
                mp = a.transform.to_crop(alt)
            rec.update(
                found=True,
                true=a.transform.to_crop(s.lm68),
                dlib=np.asarray(dlib, np.float64),
                mediapipe=np.asarray(mp, np.float64),
                id_coeff=np.asarray(s.coeffs["id_coeff"], np.float64),
                aligned=a,
                sample=s,
                detector=face.detector or "dlib hog",
            )
            out.append(rec)
    return out


def _identity_rmse(model, coeffs, truth: tuple, nose_index: int) -> float:
    """Neutral-shape RMSE (mm) of ``coeffs (1, layout.size)`` against ``truth`` (the
    sample's neutral truth, ``evaluate.benchmark._gt``), with the synthetic benchmarks' ICP."""
    from facerecon.evaluate.benchmark import SyntheticBenchmarkConfig, _model_mesh, score

    pred = _model_mesh(model, coeffs)[0]
    return score(pred, *truth, nose_index, SyntheticBenchmarkConfig(), True)["rmse"]


def _detected_target(record: dict, like):
    """The record's crop with the detected landmarks, MediaPipe's as a second opinion after
    dlib, as the product fits them."""
    from facerecon.methods import crops_target

    alt = {}
    if record["detector"] != "mediapipe" and np.isfinite(record["mediapipe"]).all():
        alt = {"mediapipe": record["mediapipe"]}
    return crops_target([record["aligned"]], like, (record["detector"],), [alt])


def fit_rows(records: list[dict]) -> list[dict]:
    """The landmark fit on each landmark source, beside the average face (module docstring)."""
    import dataclasses

    import torch

    from facerecon.evaluate.benchmark import _gt
    from facerecon.fit import FitConfig, FitTarget, StageConfig, fit
    from facerecon.fit.config import SHAPE
    from facerecon.losses import HybridLossConfig
    from facerecon.methods import FitMethod
    from facerecon.morphable import load_face_model

    model = load_face_model("bfm-lite")
    # the product's landmark evidence: its photometric stages keep the shape
    product = FitMethod(model, FitConfig().photometric_frozen(SHAPE))
    test = [r for r in records if r["found"]]
    cfg = FitConfig(
        landmark_iters=300,
        coarse=StageConfig(iters=0),
        fine=StageConfig(iters=0),
        landmark_detector=None,
        landmark_weighting="paper",
        landmark_robust=0.0,
        contour_landmarks=False,
    )
    variants = {
        "exact": (0.0, 0.5, 1.0),
        "2 px noise": (2.0, 1.0, 2.0),
        "4 px noise": (4.0, 3.0, 5.0),
    }
    errors: dict[str, list[float]] = {"average face": []}
    rng = np.random.default_rng(SEED + 1)
    zero = torch.zeros(1, model.layout.size, dtype=model.mean_shape.dtype)
    for r in test:
        truth, nose = _gt(r["sample"], neutral=True), r["sample"].nose_index
        errors["average face"].append(_identity_rmse(model, zero, truth, nose))
        image = torch.from_numpy(r["aligned"].image).permute(2, 0, 1)[None] / 255.0
        for name, (sigma, alpha, beta) in variants.items():
            lm = r["true"] + rng.normal(0, sigma, (68, 2)) if sigma else r["true"]
            target = FitTarget(image.to(zero), torch.as_tensor(lm, dtype=zero.dtype)[None])
            c = dataclasses.replace(cfg, loss=HybridLossConfig(alpha=alpha, beta=beta))
            coeffs = fit(model, target, c).coeffs.detach()
            errors.setdefault(name, []).append(_identity_rmse(model, coeffs, truth, nose))
        coeffs = product(_detected_target(r, zero)).coeffs.detach()
        errors.setdefault("detected", []).append(_identity_rmse(model, coeffs, truth, nose))
    base = float(np.mean(errors["average face"]))
    rows = []
    labels = {
        "average face": ("average face", ""),
        "detected": (
            "fit to the detectors' landmarks (the product's landmark stage)",
            "; FitConfig() with the shape frozen after the landmark stage: calibrated surface "
            "points and noise, MediaPipe's second opinion",
        ),
    }
    for name, vals in errors.items():
        label, how = labels.get(
            name,
            (f"fit to true landmarks, {name}",
             "; landmarks only, model-vertex definition, prior tuned per noise level"),
        )  # fmt: skip
        rows.append(
            _row(
                f"identity RMSE: {label}",
                float(np.mean(vals)),
                "mm",
                f"{np.mean(vals) / base:.2f}x the average face, {len(vals)} faces{how}",
            )
        )
    return rows


def detector_rows(records: list[dict]) -> list[dict]:
    """The detectors' error against the true landmark points, and how many faces were found."""
    found = [r for r in records if r["found"]]
    rows = []
    for key, name in (("dlib", "dlib"), ("mediapipe", "MediaPipe")):
        use = [r for r in found if np.isfinite(r[key]).all()]
        if not use:
            continue
        d = np.stack([r[key] for r in use])
        t = np.stack([r["true"] for r in use])
        iod = np.linalg.norm(t[:, 36] - t[:, 45], axis=-1)[:, None]
        nme = np.linalg.norm(d - t, axis=-1) / iod * 100
        rows.append(
            _row(
                f"{name} 68 points: error vs the model's landmark vertices",
                float(nme.mean()),
                "% IOD",
                f"inner points (17-67) {nme[:, 17:].mean():.1f} %, jaw {nme[:, :17].mean():.1f} %;"
                f" outer-eye-corner distance {iod.mean():.0f} crop px; {len(use)} faces",
            )
        )
    by_dlib = sum(1 for r in found if str(r["detector"]).startswith("dlib"))
    rows.append(
        _row(
            "faces found",
            100.0 * len(found) / len(records),
            "%",
            f"{len(found)} of {len(records)} by the product's chain, {by_dlib} by dlib",
        )
    )
    return rows


def photometric_rows(n_id: int, n_cond: int) -> list[dict]:
    """The fit with its photometric stages free to move the shape (the default) against the
    former default (shape from the landmark stage; the photometric stages refine pose, light
    and albedo), on five kinds of render of the same identities and poses: clean with the
    model's own albedo; clean and photo-like (the engine's occluders / blur / noise / JPEG)
    with whole photo textures (the source person's shading baked in); clean and photo-like
    with the model albedo times the photos' detail (the benchmarks' renders)."""

    import torch

    from facerecon.evaluate.benchmark import _gt
    from facerecon.fit import FitConfig
    from facerecon.fit.config import SHAPE
    from facerecon.methods import FitMethod
    from facerecon.morphable import load_face_model

    model = load_face_model("bfm-lite")
    base = FitConfig()
    fits = {
        "landmarks decide the shape (former default)": FitMethod(
            model, base.photometric_frozen(SHAPE)
        ),
        "photometric stages move it (default)": FitMethod(model, base),
    }
    kinds = {
        "clean, model albedo": ("model", True),
        "clean, photo albedo": ("photo", True),
        "photo-like (degraded), photo albedo": ("photo", False),
        "clean, photo-detail albedo": ("photo-detail", True),
        "photo-like (degraded), photo-detail albedo": ("photo-detail", False),
    }
    rows = []
    zero = torch.zeros(1, model.layout.size, dtype=model.mean_shape.dtype)
    for kind, (albedo, clean) in kinds.items():
        records = [r for r in collect(n_id, n_cond, albedo, clean) if r["found"]]
        errors: dict[str, list[float]] = {"average face": []}
        for r in records:
            truth, nose = _gt(r["sample"], neutral=True), r["sample"].nose_index
            errors["average face"].append(_identity_rmse(model, zero, truth, nose))
            target = _detected_target(r, zero)
            for name, method in fits.items():
                coeffs = method(target).coeffs.detach()
                errors.setdefault(name, []).append(_identity_rmse(model, coeffs, truth, nose))
        ref = float(np.mean(errors["average face"]))
        for name, vals in errors.items():
            label = name if name == "average face" else f"fit, {name}"
            rows.append(
                _row(
                    f"{kind}: identity RMSE, {label}",
                    float(np.mean(vals)),
                    "mm",
                    f"{np.mean(vals) / ref:.2f}x the average face, {len(vals)} faces",
                )
            )
    return rows


def run(quick: bool = False) -> list[dict]:
    n_id, n_cond = QUICK if quick else FULL
    t0 = time.perf_counter()
    records = collect(n_id, n_cond)
    rows = fit_rows(records) + detector_rows(records)
    rows += photometric_rows(*(PHOTO_QUICK if quick else PHOTO_FULL))
    rows.append(
        _row(
            "run",
            time.perf_counter() - t0,
            "s",
            f"{n_id} bfm-lite identities x {n_cond} renders, seed {SEED}, photo-detail albedo, "
            "|yaw|<=45",
        )
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    for r in run(args.quick):
        print(f"{r['name']:<64} {r['value']:8.3f} {r['unit']:<6} {r['notes']}")


if __name__ == "__main__":
    main()

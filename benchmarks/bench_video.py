"""Pose guidance (PGN) and video (``video``).

    python benchmarks/bench_video.py [--quick]

1. Pose on synthetic stills (bfm-lite, photo-detail albedo, held-out seed 2027) per |yaw| bin up to
   90 degrees, aligned on their true landmarks: PGN, the R-Net's regressed pose and the fit
   (``FitConfig.fast()`` on the true 68 points); neutral shape beside the average face
   (:func:`facerecon.evaluate.video.pose_benchmark`).
2. Landmarks on ``faces_68pt`` (the product's detection): NME of the model landmarks each
   method's pose and shape project, and of PGN's own predicted 2D landmarks.
3. Synthetic clips (a head turning +-60 degrees and talking, 2 s at 25 fps, 320 px): per-frame
   R-Net / PGN / fit against the video path (clip identity + smoothing: none, One-Euro,
   Gaussian); shape, identity spread, rotation error, rotation and position jitter
   (:func:`facerecon.evaluate.video.video_benchmark`).
4. Speed: frames per second of the video path (decode, track, align, network) on a 640 px clip,
   and of the overlay video.

``FACERECON_BENCH_VIDEO_PARTS=speed,video`` runs only those parts (the others' sections of
BENCHMARKS.md are kept with their own dates).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACERECON_SHARED", ROOT.parent / "shared"))
POSE = "Accuracy: pose from 3D landmarks (PGN), synthetic stills to 90 degrees yaw"
LM = "Landmarks: PGN on faces_68pt"
VIDEO = "Accuracy: video (synthetic clips, head turning and talking)"
SPEED = "Speed: video"


def _texture_dir() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_realistic import texture_dir

    return texture_dir()


def _methods(model, with_fit: bool):
    from facerecon.fit import FitConfig
    from facerecon.methods import FitMethod, MethodSpec, build_method
    from facerecon.nets.shipped import shipped_weights

    out = {}
    if shipped_weights("pgn", model.name):
        out["pgn"] = build_method("pgn", MethodSpec(), model)
        # the ablation of the mirrored crop's landmarks (PGNMethod.flip, on by default)
        out["pgn-noflip"] = build_method("pgn", MethodSpec(), model)
        out["pgn-noflip"].flip = False
    if shipped_weights("rnet", model.name):
        out["rnet"] = build_method(
            "rnet", MethodSpec(weights=shipped_weights("rnet", model.name)), model
        )
    if with_fit:
        out["fit"] = FitMethod(model, FitConfig.fast())
    return out


def pose_rows(model, quick: bool) -> list[dict]:
    from facerecon.evaluate.video import PoseBenchmarkConfig, pose_benchmark

    cfg = PoseBenchmarkConfig(
        per_bin=2 if quick else 8, extra={"albedo": "photo-detail", "texture_dir": _texture_dir()}
    )
    res = pose_benchmark(model, _methods(model, True), cfg, progress=print)
    rows = []
    for r in res["rows"]:
        note = (
            f"mean {r['rot_mean']:.1f} deg; neutral shape {r['shape_mm']:.2f} mm vs average "
            f"face {r['mean_face_mm']:.2f} mm; n={r['n']}"
        )
        rows.append(
            {
                "section": POSE,
                "name": f"|yaw| {r['bin']}: {r['method']}: rotation error",
                "value": r["rot_deg"],
                "unit": "deg (median)",
                "notes": note,
            }
        )
    for name, s in res["seconds"].items():
        rows.append(
            {
                "section": POSE,
                "name": f"seconds per face: {name}",
                "value": s,
                "unit": "s",
                "notes": "batches of 16 crops",
            }
        )
    return rows


def landmark_rows(model) -> list[dict]:
    import numpy as np

    from facerecon.detect import detector_for, load_image
    from facerecon.fit import fitted_landmarks
    from facerecon.io import read_pts
    from facerecon.methods import crops_target
    from facerecon.pipeline import prepare_photo
    from facerecon.render import CameraConfig

    folder = SHARED / "data" / "faces_68pt"
    if not folder.is_dir():
        return [
            {
                "section": LM,
                "name": "skipped",
                "value": math.nan,
                "unit": "",
                "notes": f"{folder} not found",
            }
        ]
    detector = detector_for("auto")
    rows = []
    photos = ("breakingbad.jpg", "takeo.ppm", "einstein.jpg")
    faces = {
        n: prepare_photo(load_image(folder / n), folder / n, n, detector, False)[0] for n in photos
    }
    for name, method in _methods(model, True).items():
        nme, own = [], []
        for n in photos:
            truth = read_pts((folder / n).with_suffix(".pts"))
            face = faces[n]
            target = crops_target([face.aligned], model.mean_shape)
            est = method(target)
            p = model.layout.split(est.coeffs)
            v = model.shape(p["id_coeff"], p["exp_coeff"])
            pts = fitted_landmarks(model, v, p["angles"], p["trans"], CameraConfig())
            iod = np.linalg.norm(truth[36] - truth[45])
            pred = face.aligned.transform.to_original(pts[0].detach().numpy())
            nme.append(np.linalg.norm(pred - truth, axis=1).mean() / iod)
            if est.lm3d is not None:
                uv = face.aligned.transform.to_original(est.lm3d[0, :, :2].detach().numpy())
                own.append(np.linalg.norm(uv - truth, axis=1).mean() / iod)
        rows.append(
            {
                "section": LM,
                "name": f"{name}: model landmarks (pose + shape)",
                "value": 100 * float(np.mean(nme)),
                "unit": "% IOD",
                "notes": "3 photos, the product's detector chain aligns",
            }
        )
        if own:
            rows.append(
                {
                    "section": LM,
                    "name": f"{name}: its predicted 2D landmarks",
                    "value": 100 * float(np.mean(own)),
                    "unit": "% IOD",
                    "notes": "the points the pose is solved from",
                }
            )
    return rows


def video_rows(model, quick: bool) -> list[dict]:
    from facerecon.evaluate.video import VideoBenchmarkConfig, video_benchmark

    cfg = VideoBenchmarkConfig(
        clips=1 if quick else 2,
        frames=50,
        shape_every=10,
        extra={"albedo": "photo-detail", "texture_dir": _texture_dir()},
    )
    res = video_benchmark(model, _methods(model, not quick), cfg, progress=print)
    rows = []
    base = res["summary"].get("rnet per-frame", {})
    for key, m in res["summary"].items():
        jit = base.get("rot_jitter_deg")
        ratio = m["rot_jitter_deg"] / jit if jit else math.nan
        pjit = base.get("pos_jitter_mm")
        pratio = m["pos_jitter_mm"] / pjit if pjit else math.nan
        note = (
            f"rotation error {m['rot_deg']:.1f} deg, rotation jitter {m['rot_jitter_deg']:.3f} "
            f"deg ({ratio:.3f}x per-frame R-Net), position jitter {m['pos_jitter_mm']:.2f} "
            f"mm ({pratio:.2f}x), identity spread {m['id_spread_mm']:.2f} mm, landmark NME "
            f"{100 * m['nme']:.1f} %"
        )
        rows.append(
            {
                "section": VIDEO,
                "name": f"{key}: shape",
                "value": m["shape_mm"],
                "unit": "mm RMSE",
                "notes": note,
            }
        )
    rows.append(
        {
            "section": VIDEO,
            "name": "average face: shape",
            "value": res["mean_face_mm"],
            "unit": "mm RMSE",
            "notes": f"{res['clips']} clips x {res['frames']} frames, "
            "posed truth (identity + expression), shapes every 5th frame",
        }
    )
    for name, f in res["frames_per_second"].items():
        rows.append(
            {
                "section": VIDEO,
                "name": f"estimate frames/s: {name}",
                "value": f,
                "unit": "frames/s",
                "notes": "decode, track, align, estimate; 320 px",
            }
        )
    return rows


def speed_rows(model) -> list[dict]:
    import tempfile

    from facerecon.clip import (
        ClipOptions,
        clip_detector,
        clip_outputs,
        estimate_clip,
        write_clip,
        write_overlay,
    )
    from facerecon.data.synthetic import SynthConfig, SyntheticFaces
    from facerecon.data.synthetic_video import write_synthetic_clip
    from facerecon.detect.track import FaceTracker

    work = Path(tempfile.mkdtemp(prefix="facerecon_video_speed_"))
    faces = SyntheticFaces(model, SynthConfig(image_size=640, occluder_prob=0.0), seed=77)
    path = work / "speed.mp4"
    write_synthetic_clip(path, faces, 1, 75, 25.0, 45.0)
    rows = []
    for name, method in _methods(model, False).items():
        best = None
        for _ in range(2):  # second run: warm caches
            tracker = FaceTracker(clip_detector("auto"))
            opts = ClipOptions(out_dir=work, overwrite=True)
            t0 = time.perf_counter()
            res = estimate_clip(path, opts, method, model, tracker)
            dt = time.perf_counter() - t0
            tracker.close()
            best = res if best is None or dt < best.seconds["total"] else best
        n = len(best.status)
        parts = ", ".join(
            f"{k} {1000 * v / n:.1f} ms" for k, v in best.seconds.items() if k != "total"
        )
        rows.append(
            {
                "section": SPEED,
                "name": f"video path frames/s: {name}",
                "value": n / best.seconds["total"],
                "unit": "frames/s",
                "notes": f"640x640 clip, {n} frames, 1 face; per frame: {parts}; target >= 15",
            }
        )
        paths = clip_outputs(work, f"out_{name}")
        t0 = time.perf_counter()
        write_clip(best, opts, model, paths)
        w = time.perf_counter() - t0
        o = write_overlay(best, opts, model, paths)
        rows.append(
            {
                "section": SPEED,
                "name": f"outputs: {name}",
                "value": (w + o) / n * 1000,
                "unit": "ms/frame",
                "notes": f"npz + OBJ + animated GLB {w:.1f} s, overlay "
                f"MP4 {o:.1f} s ({o / n * 1000:.0f} ms/frame: a render per frame)",
            }
        )
    return rows


def run(quick: bool = False) -> list[dict]:
    from facerecon.morphable import load_face_model

    model = load_face_model("bfm-lite")
    parts = os.environ.get("FACERECON_BENCH_VIDEO_PARTS", "speed,landmarks,pose,video").split(",")
    producers = {
        "speed": lambda: speed_rows(model),
        "landmarks": lambda: landmark_rows(model),
        "pose": lambda: pose_rows(model, quick),
        "video": lambda: video_rows(model, quick),
    }
    return [row for part, make in producers.items() if part in parts for row in make()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    for r in run(args.quick):
        print(f"{r['name']:<60} {r['value']:10.3f} {r['unit']:<8} {r['notes']}")


if __name__ == "__main__":
    main()

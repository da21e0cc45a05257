"""Accuracy on photo-like renders up to 60 degrees of yaw (``realistic``), by yaw bin.

    python benchmarks/bench_realistic.py [--quick]

The synthetic-ict protocol (detect with the product's chain -> align -> reconstruct -> ICP with
isotropic scale, point-to-plane RMSE over 95 mm around the nose tip), on renders whose albedo
carries photos' detail (``SynthConfig(albedo="photo-detail")``: the identity's model albedo
times the detail of a photo texture -- real skin, eyes, brows and lips, so the detectors
behave as on photos -- lit on the true shape, without the source person's baked shading),
|yaw| <= 60, pitch <= 20, roll <= 15 degrees, for two ground-truth models: bfm-lite
identities (held out: seed 2026, never used for training or calibration) and ICT-FaceKit
identities (a model we do not reconstruct with). Every method (fit, rnet, auto, the mean
face, MediaPipe's face mesh) is scored per |yaw| bin, on the posed mesh against the posed
truth and on the neutral shape against the neutral truth.

Textures: the two shipped (public-domain) ones plus, when ../shared is present, the three made
from the hand-annotated development photos (``scripts/make_photo_textures.py --shared``; built
once into ``bench_out/textures``). The landmark calibrations were measured on renders with the
latter three (other seeds and identities).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACERECON_SHARED", ROOT.parent / "shared"))
ICT_NPZ = SHARED / "data" / "ict_face_model" / "ict_face_model.npz"
SECTION = "Accuracy: realistic renders (photo albedo, |yaw| <= 60)"
TEXTURES = ROOT / "bench_out" / "textures"
FULL = {"bfm-lite": (8, 5), "ict": (8, 5)}
QUICK = {"bfm-lite": (2, 3), "ict": (2, 3)}


def texture_dir() -> str:
    """The benchmark's texture folder (built on first use; shipped textures only without
    ../shared)."""
    from facerecon.data.photo_albedo import TEXTURE_DIR

    if not SHARED.is_dir():
        return str(TEXTURE_DIR)
    if not (TEXTURES / "walter.jpg").is_file():
        cmd = [sys.executable, str(ROOT / "scripts" / "make_photo_textures.py"),
               "--out", str(TEXTURES), "--shared", str(SHARED)]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True)
    return str(TEXTURES)


def config(gt: str, quick: bool):
    from facerecon.evaluate.benchmark import SyntheticBenchmarkConfig

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_synthetic import network_weights

    rnet = network_weights()[0]
    n_id, n_cond = (QUICK if quick else FULL)[gt]
    return SyntheticBenchmarkConfig(
        n_identities=n_id,
        n_conditions=n_cond,
        n_triples=0,
        seed=2026,
        gt_model=str(ICT_NPZ) if gt == "ict" else "bfm-lite",
        methods=("fit", "mean-face", "mediapipe"),
        max_yaw_deg=60.0,
        yaw_bins=(15.0, 30.0, 45.0, 60.0),
        albedo="photo-detail",
        texture_dir=texture_dir(),
        rnet=rnet,
    )


def run(quick: bool = False) -> list[dict]:
    from facerecon.evaluate.benchmark import run_synthetic_benchmark

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_synthetic import rows_from_result

    rows: list[dict] = []
    for gt in ("bfm-lite", "ict"):
        if gt == "ict" and not ICT_NPZ.is_file():
            rows.append({"section": SECTION, "name": "ict: skipped", "value": math.nan,
                         "unit": "", "notes": f"{ICT_NPZ} not found"})  # fmt: skip
            continue
        result = run_synthetic_benchmark(config(gt, quick), progress=print)
        for r in rows_from_result(result, SECTION):
            if r["name"].startswith(("image set", "3-view")):
                continue
            r["name"] = f"{gt}: {r['name']}"
            rows.append(r)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    for r in run(args.quick):
        print(f"{r['name']:<70} {r['value']:8.3f} {r['unit']:<8} {r['notes']}")


if __name__ == "__main__":
    main()

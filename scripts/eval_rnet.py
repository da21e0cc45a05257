"""Score R-Net weights the way the Table-1 ablation in the README was scored.

    python scripts/eval_rnet.py NAME=WEIGHTS [NAME=WEIGHTS ...]

Per weights file, one Markdown row: on the 16 held-out bfm-lite renders of
``tests/test_shipped_weights.py`` (aligned and scored on their true landmarks) the R-Net's
landmark error (px in the 224 crop) and front-region shape error (mm, similarity-aligned) alone
and after ``auto``'s refinement, the mean face's shape error; on the three ``faces_68pt`` photos
(``benchmarks/bench_fit.py``, needs ../shared) the landmark NME of rnet and auto.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    from facerecon.fit import FitConfig, FitTarget
    from facerecon.methods import AutoMethod, FitMethod, RNetMethod
    from facerecon.morphable import load_face_model
    from facerecon.nets.rnet import load_rnet

    tests = _load("test_shipped_weights", ROOT / "tests" / "test_shipped_weights.py")
    bench_fit = _load("bench_fit", ROOT / "benchmarks" / "bench_fit.py")
    model = load_face_model("bfm-lite")
    samples, image, lm = tests.heldout.__wrapped__(model)
    n_id = model.layout.split(model.layout.zeros(1))["id_coeff"].shape[1]
    mean_face = tests._shape_rmse_mm(model, np.zeros((len(samples), n_id)), samples).mean()
    print("| weights | landmarks px | shape rnet | shape auto | mean face | NME rnet | NME auto |")
    print("|---|---|---|---|---|---|---|")
    for arg in sys.argv[1:]:
        name, path = arg.split("=", 1)
        net, target = load_rnet(path), FitTarget(image, lm)
        coeffs = RNetMethod(model, net)(target).coeffs
        auto = AutoMethod(RNetMethod(model, net), FitMethod(model, FitConfig.refine()))
        refined = auto(target).coeffs
        shape = {
            k: tests._shape_rmse_mm(model, model.layout.split(c)["id_coeff"].numpy(), samples)
            for k, c in (("rnet", coeffs), ("auto", refined))
        }
        os.environ["FACERECON_BENCH_RNET"] = path
        rows = {r["name"]: r["value"] for r in bench_fit.run(quick=True)}
        nme = [rows[f"landmark reprojection NME, {k}"] for k in ("rnet", "auto (rnet + refine)")]
        print(
            f"| {name} | {tests._landmark_px(model, coeffs, lm):.2f} | "
            f"{shape['rnet'].mean():.3f} | {shape['auto'].mean():.3f} | {mean_face:.3f} | "
            f"{nme[0]:.1f} % | {nme[1]:.2f} % |",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""Multi-view accuracy (``multiview``; DF-MVR speed is the ``mvr_speed`` area).

    python benchmarks/bench_multiview.py [--quick]

Synthetic view triples (photo-detail albedo, held-out seed 2026) of bfm-lite and ICT-FaceKit
identities at yaws (-s, 0, +s), s = 30 and 60 degrees; the product's detector chain; every
method with 1, 2 and 3 views (``facerecon.evaluate.multiview``): the average face, the front
view alone (the single-image default, ``auto``), ``--set`` (one identity, per-view
expression), the multi-view fit, ``mvr`` and ``mvr-auto``; full runs add the diagnostic row
``mvfit: true landmarks`` (the multi-view fit on the renders' true landmarks). Scored with
the benchmark's ICP protocol (posed shape; the neutral shape against the neutral truth in the
notes). DF-MVR's speed is ``bench_mvr_speed.py``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACERECON_SHARED", ROOT.parent / "shared"))
ICT_NPZ = SHARED / "data" / "ict_face_model" / "ict_face_model.npz"
SECTION = "Accuracy: multi-view (synthetic triples, 1-3 views)"
FULL, QUICK = 4, 1


def _texture_dir() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_realistic import texture_dir

    return texture_dir()


def accuracy_rows(quick: bool) -> list[dict]:
    from facerecon.evaluate.multiview import MultiviewBenchmarkConfig, run_multiview_benchmark

    rows: list[dict] = []
    for gt in ("bfm-lite", "ict"):
        if gt == "ict" and not ICT_NPZ.is_file():
            rows.append({"section": SECTION, "name": "ict: skipped", "value": math.nan,
                         "unit": "", "notes": f"{ICT_NPZ} not found"})  # fmt: skip
            continue
        cfg = MultiviewBenchmarkConfig(
            gt_model=str(ICT_NPZ) if gt == "ict" else "bfm-lite",
            n_triples=QUICK if quick else FULL,
            fast=quick,
            texture_dir=_texture_dir(),
            true_landmarks=not quick,
        )
        res = run_multiview_benchmark(cfg, progress=print)
        for spread, by_views in res["summary"].items():
            mean = {
                k: cell.get("mean-face", {}).get("rmse", math.nan) for k, cell in by_views.items()
            }
            for k, cell in sorted(by_views.items()):
                for method, m in cell.items():
                    ratio = (
                        m["rmse"] / mean[k] if mean[k] and math.isfinite(m["rmse"]) else math.nan
                    )
                    note = (f"{ratio:.2f}x the average face; neutral shape {m['rmse_neutral']:.2f} "
                            f"mm; n={m['n']}, failures={m['failures']}")  # fmt: skip
                    rows.append({"section": SECTION,
                                 "name": f"{gt}: yaw +-{spread:g}: {k} view(s): {method}",
                                 "value": m["rmse"], "unit": "mm RMSE", "notes": note})  # fmt: skip
        for method, s in res["seconds_per_call"].items():
            rows.append({"section": SECTION, "name": f"{gt}: seconds per call: {method}",
                         "value": s, "unit": "s", "notes": "mean over all subsets"})  # fmt: skip
        for method in res["skipped"]:
            rows.append({"section": SECTION, "name": f"{gt}: {method}: skipped", "value": math.nan,
                         "unit": "", "notes": "no DF-MVR weights for the model"})  # fmt: skip
    return rows


def run(quick: bool = False) -> list[dict]:
    return accuracy_rows(quick)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    for r in run(args.quick):
        print(f"{r['name']:<60} {r['value']:10.3f} {r['unit']:<8} {r['notes']}")


if __name__ == "__main__":
    main()

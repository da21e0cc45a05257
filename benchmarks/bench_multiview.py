"""Multi-view accuracy (``multiview``; DF-MVR speed is the ``mvr_speed`` area).

    python benchmarks/bench_multiview.py [--quick]

Synthetic view triples (photo albedo, held-out seed 2026) of bfm-lite and ICT-FaceKit
identities at yaws (-s, 0, +s), s = 30 and 60 degrees; the product's detector chain; every
method with 1, 2 and 3 views (``facerecon.evaluate.multiview``): the average face, the front
view alone (the single-image default, ``auto``), ``--set`` (one identity, per-view
expression), the multi-view fit, ``mvr`` and ``mvr-auto``. Scored with the benchmark's ICP
protocol (posed shape; the neutral shape against the neutral truth in the notes).
:func:`speed_rows` (ms per triple of the DF-MVR network alone on this CPU, and its training
step) is run by ``bench_mvr_speed.py``.
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
ICT_NPZ = SHARED / "data" / "ict_face_model" / "ict_face_model.npz"
SECTION = "Accuracy: multi-view (synthetic triples, 1-3 views)"
SPEED = "Speed: DF-MVR"
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


def speed_rows() -> list[dict]:
    import torch

    from facerecon.morphable import load_face_model
    from facerecon.nets.mvr import MVRConfig, MVRNet
    from facerecon.train.mvr import MVRStep, MVRTrainConfig

    model = load_face_model("bfm-lite")
    rows = []
    for size in ("cpu", "paper"):
        cfg = (MVRConfig.cpu if size == "cpu" else MVRConfig.paper)(model.layout)
        net = MVRNet(cfg).eval()
        img = torch.rand(1, 3, 3, 224, 224)
        parse = torch.randint(0, 10, (1, 3, 224, 224))
        reps = 10 if size == "cpu" else 2
        with torch.no_grad():
            net(img, parse)
            t = []
            for _ in range(reps):
                t0 = time.perf_counter()
                net(img, parse)
                t.append(time.perf_counter() - t0)
        n_par = sum(p.numel() for p in net.parameters()) / 1e6
        rows.append({"section": SPEED, "name": f"mvr forward, one triple, {size} size",
                     "value": 1000 * sorted(t)[len(t) // 2], "unit": "ms",
                     "notes": f"{n_par:.1f} M parameters, input {cfg.input_size}; CPU "
                              f"{torch.get_num_threads()} threads; DF-MVR reports 244 ms "
                              "on a GPU (paper size)"})  # fmt: skip
    tcfg = MVRTrainConfig(render_size=112, device="cpu")
    net = MVRNet(tcfg.net_config(model)).train()
    step = MVRStep(tcfg, model, torch.device("cpu"))
    opt = torch.optim.Adam(net.parameters(), 3e-4)
    batch = {
        "image": torch.rand(4, 3, 3, 224, 224),
        "parse": torch.randint(0, 10, (4, 3, 224, 224)),
        "lm68": torch.rand(4, 3, 68, 2) * 224,
        "present": torch.ones(4, 3, dtype=torch.bool),
        "lm68_3d": model.mean_shape[model.landmarks68][None].expand(4, 68, 3).clone(),
        "has_3d": torch.ones(4, dtype=torch.bool),
    }
    t = []
    for _ in range(4):
        t0 = time.perf_counter()
        total, _ = step(net, batch)
        opt.zero_grad()
        total.backward()
        opt.step()
        t.append(time.perf_counter() - t0)
    rows.append({"section": SPEED, "name": "mvr training step, batch 4 triples, cpu size",
                 "value": sorted(t[1:])[1], "unit": "s",
                 "notes": "forward, 12 renders at 112 px, soft parse, backward, Adam"})  # fmt: skip
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

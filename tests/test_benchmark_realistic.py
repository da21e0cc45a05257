"""Guard: the default method (``auto``: the shipped R-Net refined by the noise-aware fit) is
not worse than the average face on a small subset of the realistic benchmark (photo-detail
bfm-lite renders, |yaw| <= 60, the product's detector chain; benchmarks/bench_realistic.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facerecon.evaluate.benchmark import SyntheticBenchmarkConfig, run_synthetic_benchmark
from facerecon.nets.shipped import shipped_weights


@pytest.mark.slow
def test_default_method_beats_the_average_face_on_realistic_renders():
    cfg = SyntheticBenchmarkConfig(
        gt_model="bfm-lite",
        quick=True,
        quick_identities=2,
        quick_conditions=3,
        quick_triples=0,
        seed=2026,
        methods=("mean-face",),
        max_yaw_deg=60.0,
        yaw_bins=(30.0, 60.0),
        albedo="photo-detail",
        rnet=shipped_weights("rnet", "bfm-lite"),
    )
    out = run_synthetic_benchmark(cfg)
    recs = [r for r in out["records"] if r["section"] == "single_neutral"]
    auto = {(r["identity"], r["condition"]): r["rmse"] for r in recs if r["method"] == "auto"}
    base = {(r["identity"], r["condition"]): r["rmse"] for r in recs if r["method"] == "mean-face"}
    paired = [(auto[k], base[k]) for k in auto if math.isfinite(auto[k])]
    assert len(paired) >= 4  # the detector chain finds most photo-like faces up to 60 degrees
    a, b = np.mean([p[0] for p in paired]), np.mean([p[1] for p in paired])
    print(f"neutral shape, {len(paired)} renders: auto {a:.3f} mm, average face {b:.3f} mm")
    assert a < b

"""Accuracy on held-out renders of the R-Net's own face model (``synthetic-bfm-lite``).

    python benchmarks/bench_heldout.py [--quick] [--rnet WEIGHTS]

The synthetic-ict protocol (detect -> align -> reconstruct -> ICP with isotropic scale,
point-to-plane RMSE over the face cropped 95 mm around the nose tip), but the faces are bfm-lite
identities drawn by the synthetic engine with seed 2019 (the shipped R-Net's training folder
uses seed 1: no identity is shared). This is the networks' in-distribution test: it separates
"the method does not recover shape" from synthetic-ict's ICT-vs-BFM model gap (different
landmark definitions and shape spaces). Rows: fit, mean face, and rnet / auto (and the C-Net
set rows) when R-Net weights are given (``--rnet``, ``$FACERECON_BENCH_RNET``, default the
shipped ones, with the shipped C-Net). The full run adds two diagnostic rows, ``fit: true
landmarks`` and ``auto: true landmarks``: the same methods aligned and fitted on the renders' true
68 landmarks instead of the detectors' (``TrueLandmarks``), i.e. what the detectors' error costs.
No extra data is needed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

SECTION = "Accuracy: synthetic-bfm-lite (held out)"
FULL_IDENTITIES = 8
FULL_CONDITIONS = 4


def _bench_synthetic():
    import importlib.util

    path = Path(__file__).resolve().parent / "bench_synthetic.py"
    spec = importlib.util.spec_from_file_location("bench_synthetic", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def config(quick: bool, rnet: str | None = None):
    """The benchmark configuration this script runs."""
    from facerecon.evaluate.benchmark import SyntheticBenchmarkConfig

    rnet, cnet = _bench_synthetic().network_weights(rnet)
    return SyntheticBenchmarkConfig(
        n_identities=FULL_IDENTITIES,
        n_conditions=FULL_CONDITIONS,
        n_triples=0,
        gt_model="bfm-lite",
        methods=("fit", "mean-face"),
        quick=quick,
        true_landmarks=not quick,
        rnet=rnet,
        cnet=cnet,
        texture_dir=_bench_synthetic()._textures(),
    )


def run(quick: bool = False, rnet: str | None = None) -> list[dict]:
    from facerecon.evaluate.benchmark import run_synthetic_benchmark

    result = run_synthetic_benchmark(config(quick, rnet), progress=print)
    return _bench_synthetic().rows_from_result(result, SECTION)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rnet", help="R-Net weights (adds the rnet and auto rows)")
    args = ap.parse_args()
    for r in run(args.quick, args.rnet):
        print(f"{r['name']:<60} {r['value']:8.3f} {r['unit']:<8} {r['notes']}")


if __name__ == "__main__":
    main()

"""Accuracy on ``synthetic-ict``: the paper's protocol on rendered ICT faces (see
``facerecon.evaluate.benchmark`` for the protocol).

    python benchmarks/bench_synthetic.py [--quick] [--rnet WEIGHTS] [--cnet WEIGHTS]

Needs ../shared/data/ict_face_model/ict_face_model.npz (the generator's face model); rows say so
when it is absent. Full: ``FULL_IDENTITIES`` x ``FULL_CONDITIONS`` images with the default fit
(hybrid loss incl. perceptual) plus one 3-view triple per identity; quick: the config's quick
sizes with ``FitConfig.fast()``. The full run adds the Table-1 ablation rows of the fit; R-Net
weights (``--rnet``, or ``$FACERECON_BENCH_RNET`` under ``make bench``; default: the shipped
ones when they exist) add the ``rnet`` and ``auto`` rows, C-Net weights the S1-S4 set rows.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

SHARED = Path(os.environ.get("FACERECON_SHARED", Path(__file__).resolve().parents[2] / "shared"))
ICT_NPZ = SHARED / "data" / "ict_face_model" / "ict_face_model.npz"
SECTION = "Accuracy: synthetic-ict"
FULL_IDENTITIES = 8
FULL_CONDITIONS = 6
LABELS = {
    "single": "single image",
    "single_neutral": "single image, neutral shape vs neutral GT",
    "by_yaw": "single image by yaw",
    "by_yaw_neutral": "single image by yaw, neutral shape",
    "sets": "image set (vs neutral GT)",
    "multiview": "3-view triple (frontal mesh)",
}


def _row(name: str, value: float, unit: str, notes: str) -> dict:
    return {"section": SECTION, "name": name, "value": value, "unit": unit, "notes": notes}


def network_weights(rnet: str | None = None, cnet: str | None = None) -> tuple:
    """``(rnet, cnet)`` weight paths as strings or None: the given ones, else
    ``$FACERECON_BENCH_RNET`` / ``$FACERECON_BENCH_CNET``, else the shipped R-Net (and the shipped
    C-Net only on top of the shipped R-Net)."""
    from facerecon.nets.shipped import shipped_weights

    rnet = rnet or os.environ.get("FACERECON_BENCH_RNET") or shipped_weights("rnet", "bfm-lite")
    cnet = cnet or os.environ.get("FACERECON_BENCH_CNET")
    if cnet is None and rnet is not None and rnet == shipped_weights("rnet", "bfm-lite"):
        cnet = shipped_weights("cnet", "bfm-lite")
    return (str(rnet) if rnet else None), (str(cnet) if cnet else None)


def config(quick: bool, rnet: str | None = None, cnet: str | None = None):
    """The benchmark configuration this script runs (networks: see the module docstring)."""
    from facerecon.evaluate.benchmark import SyntheticBenchmarkConfig

    rnet, cnet = network_weights(rnet, cnet)
    return SyntheticBenchmarkConfig(
        n_identities=FULL_IDENTITIES,
        n_conditions=FULL_CONDITIONS,
        gt_model=str(ICT_NPZ),
        quick=quick,
        ablation=not quick,
        rnet=rnet,
        cnet=cnet,
        texture_dir=_textures(),
    )


def _textures() -> str:
    """The photo textures of the realistic benchmark (``bench_realistic.texture_dir``)."""
    import importlib.util

    path = Path(__file__).resolve().parent / "bench_realistic.py"
    spec = importlib.util.spec_from_file_location("bench_realistic", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.texture_dir()


def rows_from_result(result: dict, section: str = SECTION) -> list[dict]:
    """Benchmark rows (of ``section``) from :func:`run_synthetic_benchmark`'s result."""
    from facerecon.evaluate.benchmark import cases

    def _row(name: str, value: float, unit: str, notes: str) -> dict:
        return {"section": section, "name": name, "value": value, "unit": unit, "notes": notes}

    if "skipped" in result:
        return [_row("skipped", math.nan, "", result["skipped"])]
    sizes = result["sizes"]
    cfg = result["config"]
    fit_kind = "FitConfig.fast()" if cfg["quick"] or cfg["fast_fit"] else "FitConfig()"
    gt_name = "ICT" if str(cfg["gt_model"]).endswith(".npz") else cfg["gt_model"]
    setup = (
        f"{sizes['identities']} {gt_name} identities x {sizes['conditions']} conditions, "
        f"|yaw|<={cfg['max_yaw_deg']:.0f}, |pitch|<={cfg['max_pitch_deg']:.0f}, "
        f"|roll|<={cfg['max_roll_deg']:.0f} deg, {cfg.get('albedo', 'model')} albedo, "
        "engine-default occluders/blur/noise/JPEG; "
        f"bfm-lite {fit_kind}, detector {'->'.join(cfg['detectors'])}; seed {cfg['seed']}"
    )
    rows = []
    for part, methods in result["summary"].items():
        for name, st in methods.items():
            regions = ", ".join(f"{k} {v:.2f}" for k, v in st["per_region"].items())
            notes = f"± {st['std']:.2f}, n={st['n']}, failures={st['failures']}"
            if st.get("detected_by"):
                found = ", ".join(f"{k} {v}" for k, v in st["detected_by"].items())
                notes += f" (faces found by: {found})"
            if st.get("vs_mean_face") is not None:  # paired: the renders this row reconstructed
                same = f"{st['n_paired']} {cases(part)} ({st['mean_face_same']:.2f} mm)"
                notes += f"; {st['vs_mean_face']:.3f}x the mean face on the same {same}"
            if regions:
                notes += f"; regions {regions}"
            rows.append(
                _row(
                    f"{LABELS.get(part, part)}: {name}",
                    st["mean"],
                    "mm RMSE",
                    notes,
                )
            )
    rows.append(
        _row(
            "seconds per fitted image",
            result["seconds_per_fit"],
            "s",
            f"whole run {result['seconds']:.0f} s; {setup}",
        )
    )
    for method, sec in result.get("seconds_per_image", {}).items():
        rows.append(_row(f"seconds per image: {method}", sec, "s", f"weights {cfg['rnet']}"))
    for note in result["notes"]:
        rows.append(_row("warning", math.nan, "", note))
    return rows


def run(quick: bool = False, rnet: str | None = None, cnet: str | None = None) -> list[dict]:
    from facerecon.evaluate.benchmark import run_synthetic_benchmark

    if not ICT_NPZ.is_file():
        return [_row("skipped", math.nan, "", f"{ICT_NPZ} not found")]
    cfg = config(quick, rnet, cnet)
    return rows_from_result(run_synthetic_benchmark(cfg, progress=print))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rnet", help="R-Net weights (adds the rnet and auto rows)")
    ap.add_argument("--cnet", help="C-Net weights for --rnet (adds the S1-S4 set rows)")
    args = ap.parse_args()
    for r in run(args.quick, args.rnet, args.cnet):
        print(f"{r['name']:<60} {r['value']:8.3f} {r['unit']:<8} {r['notes']}")


if __name__ == "__main__":
    main()

"""Fit the skin / non-skin colour mixtures of ``facerecon.skin`` on the UCI skin data.

Reproduces ``src/facerecon/skin/skin_gmm.npz`` deterministically (fixed seed, fixed split)::

    python scripts/fit_skin.py [--data PATH] [--out PATH] [--compare]

Data: ``Skin_NonSkin.txt`` (UCI "Skin Segmentation", 245,057 rows). Its columns are B, G, R,
label (1 skin, 2 non-skin) whatever its header says. The mixtures are fitted on a stratified 80 %
of the rows and evaluated on the other 20 %. The data repeat colours heavily (51,433 unique
colours in 245,057 rows), so a row split puts most test colours in the training set too;
``--compare`` also reports a stricter split by unique colour (no colour in both halves).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from facerecon.skin.gmm import fit_gmm
from facerecon.skin.model import DEFAULT_MODEL_PATH, SkinModel, rgb_to_features

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "skin" / "Skin_NonSkin.txt"

SEED = 0
TEST_FRACTION = 0.2
SPACE = "ycbcr"
COMPONENTS = 4
PRIOR = 0.8


def load_rows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``rgb (M, 3)`` uint8 and ``is_skin (M,)`` bool."""
    raw = np.loadtxt(path, skiprows=1, dtype=np.int64)
    if raw.ndim != 2 or raw.shape[1] != 4 or not np.isin(raw[:, 3], (1, 2)).all():
        sys.exit(f"error: {path} is not the 4-column UCI skin file")
    return raw[:, [2, 1, 0]].astype(np.uint8), raw[:, 3] == 1


def stratified_split(is_skin: np.ndarray, seed: int, frac: float) -> np.ndarray:
    """``(M,)`` bool test mask: ``frac`` of each class, chosen by a seeded permutation."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(is_skin), dtype=bool)
    for cls in (True, False):
        idx = np.flatnonzero(is_skin == cls)
        idx = idx[rng.permutation(len(idx))]
        test[idx[: round(frac * len(idx))]] = True
    return test


def colour_split(rgb: np.ndarray, is_skin: np.ndarray, seed: int, frac: float) -> np.ndarray:
    """Test mask that sends every unique colour wholly to one side (stratified by majority)."""
    _, inv, counts = np.unique(rgb, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    skin_share = np.bincount(inv, weights=is_skin) / counts
    test_colour = stratified_split(skin_share >= 0.5, seed, frac)
    return test_colour[inv]


def fit_model(rgb: np.ndarray, is_skin: np.ndarray, space: str, k: int, prior: float):
    """Fit both mixtures on unique colours weighted by their counts (same as EM on all rows)."""
    gmms, info = [], []
    for cls in (True, False):
        uniq, counts = np.unique(rgb[is_skin == cls], axis=0, return_counts=True)
        g, ll, iters = fit_gmm(rgb_to_features(uniq, space), k, counts, seed=SEED)
        gmms.append(g)
        info.append((ll, iters))
    return SkinModel(space, gmms[0], gmms[1], prior), info


def metrics(model: SkinModel, rgb: np.ndarray, is_skin: np.ndarray) -> dict[str, float]:
    """Accuracy, precision and recall of ``P > 0.5`` on rows (evaluated per unique colour)."""
    uniq, inv = np.unique(rgb, axis=0, return_inverse=True)
    pred = (model.probability(rgb_to_features(uniq, model.space)) > 0.5)[inv.reshape(-1)]
    tp = float(np.sum(pred & is_skin))
    return {
        "accuracy": float(np.mean(pred == is_skin)),
        "precision": tp / max(float(pred.sum()), 1.0),
        "recall": tp / max(float(is_skin.sum()), 1.0),
    }


def _fmt(m: dict[str, float]) -> str:
    return " ".join(f"{k} {100 * v:6.2f}%" for k, v in m.items())


def compare(rgb: np.ndarray, is_skin: np.ndarray) -> None:
    """Colour space x components x prior, on the row split and the unique-colour split."""
    empirical = float(is_skin.mean())
    for split_name, test in (
        ("row split", stratified_split(is_skin, SEED, TEST_FRACTION)),
        ("colour split", colour_split(rgb, is_skin, SEED, TEST_FRACTION)),
    ):
        print(f"== {split_name}: train {np.sum(~test)} rows, test {np.sum(test)} rows")
        for space in ("ycbcr", "rgb", "cbcr"):
            for k in (2, 4, 8):
                t0 = time.perf_counter()
                model, _ = fit_model(rgb[~test], is_skin[~test], space, k, 0.5)
                dt = time.perf_counter() - t0
                for prior in (empirical, 0.5, 0.8):
                    m = metrics(model.with_prior(prior), rgb[test], is_skin[test])
                    print(f"{space:6s} K={k} prior={prior:.3f}  {_fmt(m)}  (fit {dt:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH)
    ap.add_argument("--compare", action="store_true", help="print the model-selection table")
    args = ap.parse_args(argv)
    if not args.data.is_file():
        sys.exit(f"error: skin data not found at {args.data}")
    rgb, is_skin = load_rows(args.data)
    if args.compare:
        compare(rgb, is_skin)
    test = stratified_split(is_skin, SEED, TEST_FRACTION)
    model, info = fit_model(rgb[~test], is_skin[~test], SPACE, COMPONENTS, PRIOR)
    for name, (ll, iters) in zip(("skin", "non-skin"), info, strict=True):
        print(f"{name:8s} mixture: {iters} EM iterations, mean log-likelihood {ll:.4f}")
    print(f"held-out ({np.sum(test)} rows, {SPACE}, K={COMPONENTS}, prior {PRIOR}):")
    print("  " + _fmt(metrics(model, rgb[test], is_skin[test])))
    alt = model.with_prior(0.5)
    print(f"  with prior 0.5: {_fmt(metrics(alt, rgb[test], is_skin[test]))}")
    model.save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

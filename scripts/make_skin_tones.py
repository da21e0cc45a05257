"""Derive the skin-tone table of ``facerecon.data.synthetic`` from the UCI skin data.

Writes ``src/facerecon/data/skin_tones.json`` deterministically::

    python scripts/make_skin_tones.py [--data PATH] [--out PATH] [--k 16]

Data: ``Skin_NonSkin.txt`` (UCI "Skin Segmentation"); columns B, G, R, label (1 = skin) whatever
its header says. The skin rows are clustered in RGB with k-means (scipy ``kmeans2``, fixed seed,
k-means++ init); the table keeps each cluster centre (RGB in 0..1) and the fraction of skin rows it
holds, sorted by luminance. The generator samples a tone with those fractions as probabilities.
Only these k colours (not the data) are shipped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.cluster.vq import kmeans2

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "skin" / "Skin_NonSkin.txt"
DEFAULT_OUT = REPO / "src" / "facerecon" / "data" / "skin_tones.json"


def skin_tones(bgr_label: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means skin tones ``(k, 3)`` RGB 0..1 and their weights ``(k,)`` from ``(R, 4)`` rows."""
    skin = bgr_label[bgr_label[:, 3] == 1, :3][:, ::-1].astype(np.float64) / 255.0
    centres, labels = kmeans2(skin, k, minit="++", seed=np.random.default_rng(seed))
    weights = np.bincount(labels, minlength=k).astype(np.float64)
    keep = weights > 0
    centres, weights = centres[keep], weights[keep] / weights.sum()
    order = np.argsort(centres @ np.array([0.299, 0.587, 0.114]))
    return centres[order], weights[order]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--k", type=int, default=16)
    args = ap.parse_args()
    rows = np.loadtxt(args.data, skiprows=1, dtype=np.int64)
    centres, weights = skin_tones(rows, args.k)
    table = {
        "source": "UCI Skin Segmentation (Skin_NonSkin.txt), skin rows, k-means in RGB",
        "n_skin_rows": int((rows[:, 3] == 1).sum()),
        "rgb": np.round(centres, 4).tolist(),
        "weight": np.round(weights, 4).tolist(),
    }
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {args.out}: {len(centres)} tones")
    for c, w in zip(centres, weights, strict=True):
        print(f"  rgb {np.round(c * 255).astype(int).tolist()}  weight {w:.3f}")


if __name__ == "__main__":
    main()

"""Compare the coefficients of two ``facerecon reconstruct`` output folders.

    python scripts/compare_outputs.py BEFORE/ AFTER/ [--atol 1e-5]

For every ``NAME.npz`` in BEFORE: the largest absolute difference of each array of
``facerecon.io.load_coefficients`` in AFTER. Exit 0 when every face is present in both and
every coefficient array agrees within ``--atol``, 1 otherwise. Used to show that a refactoring
changed no output, and that sharded or multi-worker runs give the single run's outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ARRAYS = ("coeffs", "id_coeff", "exp_coeff", "tex_coeff", "angles", "gamma", "trans")


def compare(before: Path, after: Path, atol: float) -> tuple[list[str], bool]:
    """Report lines and whether every face agrees within ``atol``."""
    from facerecon.io import load_coefficients

    lines, ok = [], True
    names = sorted(p.stem for p in before.glob("*.npz"))
    if not names:
        return [f"{before}: no .npz outputs"], False
    for name in names:
        other = after / f"{name}.npz"
        if not other.is_file():
            lines.append(f"{name}: missing in {after}")
            ok = False
            continue
        a, _ = load_coefficients(before / f"{name}.npz")
        b, _ = load_coefficients(other)
        diffs = {k: float(np.abs(np.asarray(a[k]) - np.asarray(b[k])).max()) for k in ARRAYS}
        worst = max(diffs.values())
        ok &= worst <= atol
        detail = ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
        lines.append(f"{name}: max |diff| {worst:.2e} ({detail})")
    return lines, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--atol", type=float, default=1e-5)
    args = ap.parse_args()
    lines, ok = compare(args.before, args.after, args.atol)
    print("\n".join(lines))
    print("identical within" if ok else "DIFFERENT beyond", f"atol {args.atol:g}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

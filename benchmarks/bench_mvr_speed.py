"""DF-MVR speed on this CPU (``mvr_speed``): ms per triple of the network alone at the CPU and
the paper size, and one training step.

    python benchmarks/bench_mvr_speed.py

Its own area (the rows come from ``bench_multiview.speed_rows``) so that it can be measured
on a quiet machine in a minute, apart from the 35-minute multi-view accuracy run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _bench_multiview():
    path = Path(__file__).resolve().parent / "bench_multiview.py"
    spec = importlib.util.spec_from_file_location("bench_multiview", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(quick: bool = False) -> list[dict]:
    return _bench_multiview().speed_rows()


def main() -> None:
    for r in run():
        print(f"{r['name']:<60} {r['value']:10.3f} {r['unit']:<8} {r['notes']}")


if __name__ == "__main__":
    main()

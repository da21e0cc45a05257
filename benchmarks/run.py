"""Run the benchmark modules and write BENCHMARKS.md.

    python benchmarks/run.py [--quick] [--only render,fit] [--out BENCHMARKS.md]

Each ``benchmarks/bench_<area>.py`` exposes ``run(quick: bool) -> list[dict]`` with rows
``{"section", "name", "value", "unit", "notes"}``. Figures are medians on this machine; the
header records the command, machine and date so numbers are never quoted without them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["render", "detect", "skin", "facerec", "fit", "rnet", "synthetic"]


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores visible, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {gpu}, Python {platform.python_version()}"
    )


def load(area: str):
    path = HERE / f"bench_{area}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{area}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fmt(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if 0.99 <= abs(value) < 1.0:  # cosines and fractions near 1: keep the digits that matter
        return f"{value:.5f}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated areas")
    ap.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = ap.parse_args(argv)
    areas = [a for a in ORDER if (HERE / f"bench_{a}.py").exists()]
    if args.only:
        areas = [a for a in areas if a in args.only.split(",")]
    command = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Benchmarks",
        "",
        f"- command: `make bench` (`{command.strip()}`)",
        f"- machine: {machine()}",
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        "- figures are medians after warm-up; where we miss a target the row says so.",
        "",
    ]
    load_start = os.getloadavg()[0]
    failed = 0
    for area in areas:
        t0 = time.perf_counter()
        print(f"== {area}", flush=True)
        try:
            rows = load(area).run(quick=args.quick)
        except Exception as exc:  # a broken area must not hide the others
            failed += 1
            traceback.print_exc()
            lines += [f"## {area}", "", f"benchmark failed: `{exc!r}`", ""]
            continue
        sections: dict[str, list[dict]] = {}
        for row in rows:
            sections.setdefault(row["section"], []).append(row)
        for section, srows in sections.items():
            lines += [f"## {section}", "", "| what | value | unit | notes |", "|---|---|---|---|"]
            for r in srows:
                value, notes = fmt(float(r["value"])), r.get("notes", "")
                lines.append(f"| {r['name']} | {value} | {r['unit']} | {notes} |")
            lines.append("")
        print(f"   {len(rows)} rows in {time.perf_counter() - t0:.0f} s", flush=True)
    load_end = os.getloadavg()[0]
    lines.insert(
        5,
        f"- 1-minute load average: {load_start:.1f} at start, {load_end:.1f} at end "
        f"(timings are only comparable from a quiet machine, load < 1)",
    )
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

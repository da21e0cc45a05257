"""Run the benchmark modules and write BENCHMARKS.md.

    python benchmarks/run.py [--quick] [--only render,fit] [--out BENCHMARKS.md]

Each ``benchmarks/bench_<area>.py`` exposes ``run(quick: bool) -> list[dict]`` with rows
``{"section", "name", "value", "unit", "notes"}``. Figures are medians on this machine; the
header records the command, machine and date so numbers are never quoted without them, and
every section says when it was measured and under which load. With ``--only``, the sections of
an existing ``--out`` file that this run does not produce are kept as they were (with their
own dates); the ones it produces are replaced.
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
ORDER = [
    "render", "detect", "skin", "facerec", "fit", "rnet", "heldout", "synthetic", "realistic",
    "landmark_info",
    "mvr_speed", "multiview", "video", "texture", "throughput", "robustness",
]  # fmt: skip


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


def split_sections(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """``(header lines, {section title: its lines incl. the heading})`` of a BENCHMARKS.md."""
    header: list[str] = []
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        if current is None:
            header.append(line)
        else:
            current.append(line)
    return header, sections


def stamped(block: list[str], old_header: list[str]) -> list[str]:
    """A kept section with a ``_measured ..._`` line (from the old file's header when the
    section has none), so its date and machine stay attached to its numbers."""
    if any(line.startswith("_measured") for line in block):
        return block
    info = {k: v for k, _, v in (line[2:].partition(": ") for line in old_header) if v}
    stamp = f"_measured {info.get('date', 'in an earlier run')} on {info.get('machine', '?')}_"
    return [block[0], "", stamp, *block[1:]]


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
    produced: dict[str, list[str]] = {}
    for area in areas:
        t0 = time.perf_counter()
        print(f"== {area}", flush=True)
        try:
            rows = load(area).run(quick=args.quick)
        except Exception as exc:  # a broken area must not hide the others
            failed += 1
            traceback.print_exc()
            produced[area] = [f"## {area}", "", f"benchmark failed: `{exc!r}`", ""]
            continue
        sections: dict[str, list[dict]] = {}
        for row in rows:
            sections.setdefault(row["section"], []).append(row)
        stamp = (
            f"_measured {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, "
            f"1-minute load {os.getloadavg()[0]:.1f}, {time.perf_counter() - t0:.0f} s_"
        )
        for section, srows in sections.items():
            block = [f"## {section}", "", stamp, ""]
            block += ["| what | value | unit | notes |", "|---|---|---|---|"]
            for r in srows:
                value, notes = fmt(float(r["value"])), r.get("notes", "")
                block.append(f"| {r['name']} | {value} | {r['unit']} | {notes} |")
            produced[section] = [*block, ""]
        print(f"   {len(rows)} rows in {time.perf_counter() - t0:.0f} s", flush=True)
    load_end = os.getloadavg()[0]
    lines.insert(
        5,
        f"- 1-minute load average: {load_start:.1f} at start, {load_end:.1f} at end "
        f"(timings are only comparable from a quiet machine, load < 1)",
    )
    order = list(produced)
    kept: dict[str, list[str]] = {}
    if args.only and args.out.is_file():
        old_header, old = split_sections(args.out.read_text())
        kept = {k: stamped(v, old_header) for k, v in old.items() if k not in produced}
        order = [k for k in old if k in kept or k in produced]
        order += [k for k in produced if k not in order]
        lines.insert(
            6,
            f"- this run measured only: {', '.join(produced)}; the other sections are kept "
            "from earlier runs with their own dates",
        )
    for key in order:
        lines += produced.get(key) or kept[key]
    args.out.write_text("\n".join(lines).rstrip("\n") + "\n")
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

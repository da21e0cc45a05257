"""Robustness: the fuzz suite's size and result, and peak memory on very large photos.

    python benchmarks/bench_robustness.py [--quick]

- the number of cases in ``tests/test_fuzz.py`` (generated bad or unusual inputs, command
  errors, the two-run race, Ctrl-C) and how many pass (``--quick``: counted, not run);
- the peak resident memory of ``facerecon reconstruct`` on a 100 MP photo (JPEG and PNG;
  12000 x 8400, a real face in it) and on a 1080p one for comparison, for ``rnet`` and the
  default method: the whole process (Python, torch, the face model, the nets, the detectors),
  measured as the child's maximum resident set size.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: times the fuzz suite runs its two-run race here (tests/test_fuzz.py RACES: 10 in make test)
RACES = 20
SHARED = Path(os.environ.get("FACERECON_SHARED", ROOT.parent / "shared"))
SECTION = "Robustness (bad inputs, very large photos)"


def fuzz_cases(run_them: bool) -> tuple[int, int | None, float, list[str]]:
    """``(cases, passed or None, seconds, failed test ids)`` of tests/test_fuzz.py."""
    start = time.perf_counter()
    args = [sys.executable, "-m", "pytest", "-q", str(ROOT / "tests" / "test_fuzz.py")]
    collected = subprocess.run([*args, "--collect-only"], capture_output=True, text=True,
                               cwd=ROOT)  # fmt: skip
    m = re.search(r"(\d+) tests? collected", collected.stdout)
    n = int(m.group(1)) if m else 0
    if not run_them:
        return n, None, time.perf_counter() - start, []
    env = {**os.environ, "FACERECON_FUZZ_RACES": str(RACES)}
    done = subprocess.run([*args, "-rf"], capture_output=True, text=True, cwd=ROOT, env=env)
    passed = re.search(r"(\d+) passed", done.stdout)
    failed = re.findall(r"^FAILED (\S+)", done.stdout, re.M)
    return n, int(passed.group(1)) if passed else 0, time.perf_counter() - start, failed


def peak_mb(*args: str) -> tuple[float, float, int]:
    """``(peak resident MB, wall seconds, exit code)`` of one CLI run in a fresh process."""
    code = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run([sys.executable, '-m', 'facerecon.cli', *sys.argv[1:]],\n"
        "                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
        "time.perf_counter() - t, p.returncode)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    kb, wall, rc = out.stdout.split()
    return int(kb) / 1024, float(wall), int(rc)


def run(quick: bool = False) -> list[dict]:
    from PIL import Image

    from facerecon.cli import demo_photo

    rows: list[dict] = []

    def row(name, value, unit, notes=""):
        rows.append({"section": SECTION, "name": name, "value": value, "unit": unit,
                     "notes": notes})  # fmt: skip

    n, passed, secs, failed = fuzz_cases(run_them=not quick)
    what = (
        "generated inputs: 28 photo-level (corrupt, truncated, empty, bombs, no face, turned, "
        "16-bit, CMYK, unicode names, links, strips, 24 MP...), command errors, a folder "
        f"held by another run, the two-run race {RACES} times, Ctrl-C then --resume, large photos"
    )
    row("fuzz suite (tests/test_fuzz.py): cases", n, "cases", what)
    if passed is not None:
        notes = f"{secs:.0f} s for the file" + (f"; failed: {', '.join(failed)}" * bool(failed))
        row("fuzz suite: cases passed", passed, "cases", notes)
    source = SHARED / "data" / "faces_68pt" / "breakingbad.jpg"
    if not source.is_file():
        source = demo_photo()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photo = Image.open(source).convert("RGB")
        big = photo.resize((12000, 8400), Image.BICUBIC)
        files = {"100 MP JPEG": tmp / "big.jpg", "100 MP PNG": tmp / "big.png",
                 "1080p JPEG": tmp / "hd.jpg"}  # fmt: skip
        big.save(files["100 MP JPEG"], quality=90)
        big.save(files["100 MP PNG"], compress_level=1)
        photo.resize((1920, 1080), Image.BICUBIC).save(files["1080p JPEG"], quality=92)
        del big  # this process's memory is not what is measured
        methods = ("rnet",) if quick else ("rnet", "auto")
        for method in methods:
            for label, path in files.items():
                if quick and label == "100 MP PNG":
                    continue
                mb, wall, rc = peak_mb("reconstruct", str(path), "--method", method,
                                       "--out", str(tmp / f"o_{method}"), "--overwrite",
                                       "--quiet")  # fmt: skip
                row(f"peak memory, {label}, --method {method}", mb, "MB",
                    f"whole process, exit {rc}, {wall:.1f} s; target <= 2048 MB; decoded at "
                    "<= 4096 px a side (--max-side)")  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    for r in run(args.quick):
        print(f"{r['name']}: {r['value']:.4g} {r['unit']} ({r['notes']})")


if __name__ == "__main__":
    main()

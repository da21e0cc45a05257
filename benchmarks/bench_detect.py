"""Detection + 68-landmark timing per photo (dlib HOG, dlib MMOD, MediaPipe) and accuracy.

Photos: the 300-W samples in ../shared/data/faces_68pt when present (einstein 817x1024,
breakingbad 1920x1080, takeo 150x225), else the bundled astronaut. Median of several runs
after one warm-up run per photo (which also loads the models).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from facerecon.detect import DetectorConfig, load_image, make_detector
from facerecon.io import read_pts

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACERECON_SHARED", REPO.parent / "shared")) / "data" / "faces_68pt"


def _photos() -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    out = []
    for stem, ext in (("einstein", "jpg"), ("breakingbad", "jpg"), ("takeo", "ppm")):
        p = SHARED / f"{stem}.{ext}"
        if p.is_file():
            gt = read_pts(SHARED / f"{stem}.pts")  # 0-based (the file is 1-based)
            out.append((stem, load_image(p), gt))
    if not out:
        out.append(("astronaut", load_image(REPO / "src/facerecon/assets/astronaut.jpg"), None))
    return out


def run(quick: bool = False, only: tuple[str, ...] | None = None) -> list[dict]:
    """Rows for each backend (``only``: a subset of dlib-hog, dlib-mmod, mediapipe)."""
    rows: list[dict] = []
    photos = _photos()
    backends = [("dlib-hog", DetectorConfig(backend="dlib", detector="hog"))]
    if not quick:
        backends.append(("dlib-mmod", DetectorConfig(backend="dlib", detector="mmod")))
    backends.append(("mediapipe", DetectorConfig(backend="mediapipe")))
    if only is not None:
        backends = [b for b in backends if b[0] in only]
    repeats = 3 if quick else 5
    for name, cfg in backends:
        det = make_detector(cfg)
        times, errs, stems = [], [], []
        for stem, im, gt in photos:
            det.detect(im, all_faces=True)  # warm-up (loads models)
            ts = []
            for _ in range(1 if name == "dlib-mmod" else repeats):
                t0 = time.perf_counter()
                faces = det.detect(im, all_faces=True)
                ts.append(time.perf_counter() - t0)
            ms = 1e3 * float(np.median(ts))
            times.append(ms)
            h, w = im.shape[:2]
            note = f"{w}x{h}, {len(faces)} face(s), all_faces=True, median of {len(ts)}"
            rows.append(
                dict(section="detect", name=f"{name} {stem}", value=ms, unit="ms", notes=note)
            )
            if gt is not None and faces:
                f = min(faces, key=lambda f: np.linalg.norm(f.lm68.mean(0) - gt.mean(0)))
                e = np.linalg.norm(f.lm68 - gt, axis=1) / np.linalg.norm(gt[36] - gt[45])
                errs.append(float(e.mean()))
                stems.append(stem)
        det.close()
        rows.append(
            dict(
                section="detect",
                name=f"{name} mean per photo",
                value=float(np.mean(times)),
                unit="ms",
                notes=f"{len(photos)} photos, 2-core CPU",
            )
        )
        if errs:
            per = ", ".join(f"{s} {100 * e:.1f}" for s, e in zip(stems, errs, strict=True))
            how = {
                "dlib-mmod": " (MMOD boxes re-centred on the inner landmarks)",
                "mediapipe": (
                    " (in-sample: the 478->68 table was fitted on these photos; its"
                    " leave-one-face-out NME is in mp68_table.json)"
                ),
            }.get(name, "")
            rows.append(
                dict(
                    section="detect",
                    name=f"{name} landmark NME",
                    value=100 * float(np.mean(errs)),
                    unit="%",
                    notes=f"mean error / outer-eye-corner distance vs 300-W .pts; {per}{how}",
                )
            )
    return rows


if __name__ == "__main__":
    import sys

    for r in run(quick=False, only=tuple(sys.argv[1:]) or None):
        print(f"{r['name']:<32} {r['value']:9.2f} {r['unit']:<3} {r['notes']}")

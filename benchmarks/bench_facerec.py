"""dlib face descriptor: our torch port vs dlib's compute_face_descriptor (CPU), and parity.

Faces: dlib HOG + 68-point predictor on the 300-W samples in ../shared/data/faces_68pt when
present, else on the bundled astronaut. Timings are medians of several runs after a warm-up,
at torch's default thread count.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facerecon.nets.facerec import default_facerec_path, embed, facerec_crop, load_facerec

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACERECON_SHARED", REPO.parent / "shared")) / "data" / "faces_68pt"


def _faces(sp) -> list[tuple[np.ndarray, object]]:
    import dlib

    det = dlib.get_frontal_face_detector()
    paths = [SHARED / n for n in ("einstein.jpg", "breakingbad.jpg", "takeo.ppm")]
    paths = [p for p in paths if p.is_file()] or [REPO / "src/facerecon/assets/astronaut.jpg"]
    out = []
    for p in paths:
        img = np.array(Image.open(p).convert("RGB"))
        for box in det(img, 1 if p.name == "breakingbad.jpg" else 0):
            out.append((img, sp(img, box)))
    return out


def _median_ms(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts))


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255


def run(quick: bool = False) -> list[dict]:
    import dlib

    models = default_facerec_path().parent
    rec = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    sp = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))
    rows: list[dict] = []
    repeats = 3 if quick else 7
    threads = torch.get_num_threads()

    def row(name: str, value: float, unit: str, notes: str) -> None:
        rows.append(dict(section="facerec", name=name, value=value, unit=unit, notes=notes))

    t0 = time.perf_counter()
    load_facerec(cache=False)
    row("load (parse + convert)", 1e3 * (time.perf_counter() - t0), "ms", "22 MB dlib .dat")
    t0 = time.perf_counter()
    net = load_facerec()
    row("load (cached .pt)", 1e3 * (time.perf_counter() - t0), "ms", "includes sha256 of .dat")

    faces = _faces(sp)
    chips = [dlib.get_face_chip(img, s, 150, 0.25) for img, s in faces]
    chips8 = [chips[i % len(chips)] for i in range(8)]
    x8 = torch.cat([_t(c) for c in chips8])
    for b in (1, 8):
        x = x8[:b]
        with torch.no_grad():
            ms = _median_ms(lambda x=x: net(x), repeats)
        row(f"ours forward, batch {b}", ms / b, "ms/face", f"150x150 chip, fp32, {threads} threads")
        if b == 1:
            ms = _median_ms(lambda: rec.compute_face_descriptor(chips8[0]), repeats)
        else:
            ms = _median_ms(lambda: rec.compute_face_descriptor(chips8), repeats)
        row(f"dlib compute_face_descriptor, batch {b}", ms / b, "ms/face", "same chips")
        xg = x.clone().requires_grad_(True)
        ms = _median_ms(lambda xg=xg: torch.autograd.grad(net(xg).sum(), xg), repeats)
        row(f"ours forward+backward, batch {b}", ms / b, "ms/face", "grad w.r.t. input pixels")

    img, shape = faces[-1]
    lm = torch.tensor([[p.x, p.y] for p in shape.parts()], dtype=torch.float32)[None]
    im = _t(img)
    with torch.no_grad():
        ms = _median_ms(lambda: embed(net, im, lm), repeats)
    h, w = img.shape[:2]
    row("ours crop + forward, batch 1", ms, "ms/face", f"{w}x{h} photo, differentiable crop")
    ms = _median_ms(lambda: rec.compute_face_descriptor(img, shape), repeats)
    row("dlib chip + descriptor, batch 1", ms, "ms/face", f"{w}x{h} photo")

    cos_a, cos_b, dd = [], [], []
    ours_all = []
    for (img, shape), chip in zip(faces, chips, strict=True):
        ta = np.array(rec.compute_face_descriptor(chip))
        tb = np.array(rec.compute_face_descriptor(img, shape))
        lm = torch.tensor([[p.x, p.y] for p in shape.parts()], dtype=torch.float32)[None]
        with torch.no_grad():
            oa = net(_t(chip))[0].double().numpy()
            ob = net(facerec_crop(_t(img), lm))[0].double().numpy()
        cos_a.append(oa @ ta / np.linalg.norm(oa) / np.linalg.norm(ta))
        cos_b.append(ob @ tb / np.linalg.norm(ob) / np.linalg.norm(tb))
        ours_all.append((ob, tb))
    for i in range(len(ours_all)):
        for j in range(i + 1, len(ours_all)):
            d_o = np.linalg.norm(ours_all[i][0] - ours_all[j][0])
            d_t = np.linalg.norm(ours_all[i][1] - ours_all[j][1])
            dd.append(abs(d_o - d_t))
    n = len(faces)
    row("parity (a) same chip, min cosine", float(min(cos_a)), "cos", f"{n} faces")
    row("parity (b) photo + our crop, min cosine", float(min(cos_b)), "cos", f"{n} faces")
    if dd:
        row("pairwise distance abs(ours - dlib), max", float(max(dd)), "L2", f"{len(dd)} pairs")
    return rows


if __name__ == "__main__":
    for r in run(quick=True):
        print(f"{r['name']:<45} {r['value']:10.4f} {r['unit']:<8} {r['notes']}")

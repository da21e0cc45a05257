"""Skin map timing (numpy and torch, 224x224) and classifier quality; loss-term timing.

Timing: median of several runs after one warm-up. The 224 crop is the bundled astronaut's face
resized to 224x224 (a real colour distribution: the numpy path evaluates each distinct colour
once), plus uniform noise as the worst case (every pixel a new colour). Quality rows need
../shared/data (UCI skin file, faces_68pt) and are skipped without it.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facerecon.io import read_pts
from facerecon.losses import (
    coefficient_regularization,
    landmark_loss,
    perceptual_loss,
    photometric_loss,
)
from facerecon.skin import landmark_face_region, load_skin_model, skin_probability

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACERECON_SHARED", REPO.parent / "shared")) / "data"


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def _row(section: str, name: str, value: float, unit: str, notes: str) -> dict:
    return {"section": section, "name": name, "value": float(value), "unit": unit, "notes": notes}


def _face_crop() -> np.ndarray:
    im = Image.open(REPO / "src" / "facerecon" / "assets" / "astronaut.jpg").convert("RGB")
    return np.asarray(im.crop((150, 50, 290, 190)).resize((224, 224), Image.BILINEAR))


def _timing(quick: bool) -> list[dict]:
    reps = 5 if quick else 20
    crop = _face_crop()
    noise = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    t1 = torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 255.0
    t8 = t1.repeat(8, 1, 1, 1)
    threads = torch.get_num_threads()
    load_skin_model()  # loading the npz is not part of the per-image cost
    rows = [
        _row(
            "skin",
            "skin map numpy 224x224 (face crop)",
            _median_ms(lambda: skin_probability(crop), reps),
            "ms",
            "uint8 RGB -> (H,W) float32; distinct colours evaluated once",
        ),
        _row(
            "skin",
            "skin map numpy 224x224 (noise, worst case)",
            _median_ms(lambda: skin_probability(noise), reps),
            "ms",
            "every pixel a distinct colour",
        ),
        _row(
            "skin",
            "skin map torch 224x224 (B=1)",
            _median_ms(lambda: skin_probability(t1), reps),
            "ms",
            f"float32 CPU, {threads} threads",
        ),
        _row(
            "skin",
            "skin map torch 224x224 (B=8, per image)",
            _median_ms(lambda: skin_probability(t8), max(3, reps // 4)) / 8,
            "ms",
            f"float32 CPU, {threads} threads",
        ),
    ]
    torch.manual_seed(0)
    img = torch.rand(1, 3, 224, 224)
    ren = torch.rand(1, 3, 224, 224, requires_grad=True)
    mask = torch.rand(1, 1, 224, 224)
    lm_p = torch.rand(1, 68, 2, requires_grad=True)
    lm_t = torch.rand(1, 68, 2)
    ids = torch.randn(1, 80, requires_grad=True)
    emb = torch.randn(1, 128, requires_grad=True)

    def step() -> None:
        loss = (
            photometric_loss(img, ren, mask)
            + landmark_loss(lm_p, lm_t)
            + perceptual_loss(emb.detach(), emb)
            + coefficient_regularization(ids, ids[:, :64], ids)
        )
        loss.backward()

    rows.append(
        _row(
            "skin",
            "loss terms fwd+bwd 224x224 (B=1)",
            _median_ms(step, reps),
            "ms",
            "photometric + landmark + perceptual + coef, float32 CPU",
        )
    )
    return rows


def _quality() -> list[dict]:
    rows: list[dict] = []
    uci = SHARED / "skin" / "Skin_NonSkin.txt"
    if uci.is_file():
        spec = importlib.util.spec_from_file_location("fit_skin", REPO / "scripts/fit_skin.py")
        fs = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(fs)
        rgb, is_skin = fs.load_rows(uci)
        test = fs.stratified_split(is_skin, fs.SEED, fs.TEST_FRACTION)
        model = load_skin_model()
        for prior in (model.prior, 0.5):
            m = fs.metrics(model.with_prior(prior), rgb[test], is_skin[test])
            for key, value in m.items():
                rows.append(
                    _row(
                        "skin",
                        f"UCI held-out {key} (prior {prior:g})",
                        100 * value,
                        "%",
                        f"{model.space} K={len(model.skin.weights)}, 20% stratified rows",
                    )
                )
    faces = SHARED / "faces_68pt"
    photo = faces / "breakingbad.jpg"
    if photo.is_file():
        image = np.asarray(Image.open(photo).convert("RGB"))
        lm = read_pts(faces / "breakingbad.pts")
        region = landmark_face_region(image.shape[0], image.shape[1], lm)
        frac = float(np.mean(skin_probability(image)[region] > 0.5))
        rows.append(
            _row(
                "skin",
                "face-region skin fraction breakingbad",
                100 * frac,
                "%",
                "P>0.5 in hull(68) minus eyes/brows/mouth; einstein, takeo are gray",
            )
        )
        rows.append(
            _row(
                "skin",
                "skin map numpy 1920x1080 photo",
                _median_ms(lambda: skin_probability(image), 3),
                "ms",
                "breakingbad.jpg",
            )
        )
    return rows


def run(quick: bool = False) -> list[dict]:
    return _timing(quick) + _quality()


if __name__ == "__main__":
    for r in run(quick=True):
        print(f"{r['name']:50s} {r['value']:9.3f} {r['unit']:3s} {r['notes']}")

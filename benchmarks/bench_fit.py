"""Fitting: seconds per photo and landmark accuracy on the hand-labelled photos.

Needs ../shared/data/faces_68pt (the development data); rows say so when it is absent. With R-Net
weights (``$FACERECON_BENCH_RNET``, default the shipped ones) the same rows for ``rnet`` and
``auto`` (R-Net + ``FitConfig.refine`` with the net's training loss weights): real photos are the
synthetic-trained net's out-of-domain test.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("FACERECON_SHARED", Path(__file__).resolve().parents[2] / "shared"))
PHOTOS = ("breakingbad.jpg", "takeo.ppm", "einstein.jpg")


def run(quick: bool = False) -> list[dict]:
    from facerecon.detect import align, detect_one, load_image
    from facerecon.fit import FitConfig, fitted_landmarks
    from facerecon.io import read_pts
    from facerecon.morphable import load_face_model
    from facerecon.nets.facerec import embed, load_facerec
    from facerecon.render import CameraConfig

    folder = SHARED / "data" / "faces_68pt"
    if not folder.is_dir():
        return [
            {
                "section": "Fitting (reconstruct)",
                "name": "skipped",
                "value": float("nan"),
                "unit": "",
                "notes": f"{folder} not found",
            }
        ]
    from facerecon.methods import AutoMethod, FitMethod, RNetMethod, crops_target, refine_config
    from facerecon.nets.rnet import load_rnet
    from facerecon.nets.shipped import shipped_weights

    model = load_face_model("bfm-lite")
    facerec = functools.partial(embed, load_facerec())
    rows = []
    configs = {"fast (no perceptual)": FitMethod(model, FitConfig.fast())}
    if not quick:
        configs["default (hybrid loss incl. perceptual)"] = FitMethod(model, FitConfig(), facerec)
    weights = os.environ.get("FACERECON_BENCH_RNET") or shipped_weights("rnet", "bfm-lite")
    if weights:
        net = load_rnet(weights)
        configs["rnet"] = RNetMethod(model, net)
        refiner = FitMethod(model, refine_config(weights), facerec)
        configs["auto (rnet + refine)"] = AutoMethod(configs["rnet"], refiner)
    for label, method in configs.items():
        secs, nmes = [], []
        for name in PHOTOS:
            photo = load_image(folder / name)
            truth = read_pts((folder / name).with_suffix(".pts"))
            face = detect_one(photo)
            aligned = align(photo, face.lm68)
            target = crops_target([aligned], model.mean_shape)
            t0 = time.perf_counter()
            coeffs = method(target).coeffs
            secs.append(time.perf_counter() - t0)
            p = model.layout.split(coeffs)
            vertices, _ = model(p["id_coeff"], p["exp_coeff"], p["tex_coeff"])
            uv = fitted_landmarks(model, vertices, p["angles"], p["trans"], CameraConfig())
            pred = aligned.transform.to_original(uv[0].detach().numpy())
            iod = np.linalg.norm(truth[36] - truth[45])
            nmes.append(float(np.linalg.norm(pred - truth, axis=1).mean() / iod))
        rows.append(
            {
                "section": "Fitting (reconstruct)",
                "name": f"seconds per photo, {label}",
                "value": statistics.median(secs),
                "unit": "s",
                "notes": f"bfm-lite, CPU, {len(PHOTOS)} faces_68pt photos; target < 5 s"
                + (f"; weights {weights}" if label.startswith(("rnet", "auto")) else ""),
            }
        )
        per_photo = ", ".join(
            f"{n.split('.')[0]} {100 * e:.1f}" for n, e in zip(PHOTOS, nmes, strict=True)
        )
        rows.append(
            {
                "section": "Fitting (reconstruct)",
                "name": f"landmark reprojection NME, {label}",
                "value": 100 * float(np.mean(nmes)),
                "unit": "% of inter-ocular",
                "notes": "fitted mesh's 68 landmarks vs hand-placed points; per photo " + per_photo,
            }
        )
    return rows

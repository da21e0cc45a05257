"""Fitting: seconds per photo and landmark accuracy on the hand-labelled photos.

Needs ../shared/data/faces_68pt (the development data); rows say so when it is absent. With R-Net
weights (``$FACERECON_BENCH_RNET``, default the shipped ones) the same rows for ``rnet`` and
``auto`` (R-Net + ``FitConfig.refine``, the noise-aware fit from its estimate): real photos are the
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
    from facerecon.detect import DEFAULT_DETECTOR, detector_for, load_image
    from facerecon.fit import FitConfig, fitted_landmarks, landmark_spec, spec_landmarks
    from facerecon.io import read_pts
    from facerecon.morphable import load_face_model
    from facerecon.nets.facerec import embed, load_facerec
    from facerecon.pipeline import prepare_photo
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
    from facerecon.methods import AutoMethod, FitMethod, RNetMethod, crops_target
    from facerecon.nets.rnet import load_rnet
    from facerecon.nets.shipped import shipped_weights

    model = load_face_model("bfm-lite")
    facerec = functools.partial(embed, load_facerec())
    rows = []
    configs = {"fast": FitMethod(model, FitConfig.fast())}
    if not quick:
        configs["default fit (noise-aware)"] = FitMethod(model, FitConfig())
        configs["paper's hybrid loss (incl. perceptual)"] = FitMethod(
            model, FitConfig.paper(), facerec
        )
    weights = os.environ.get("FACERECON_BENCH_RNET") or shipped_weights("rnet", "bfm-lite")
    if weights:
        net = load_rnet(weights)
        configs["rnet"] = RNetMethod(model, net)
        configs["auto (rnet + refine)"] = AutoMethod(
            configs["rnet"], FitMethod(model, FitConfig.refine())
        )
    # the product's detection: the detector chain with MediaPipe's second opinion
    detector = detector_for(DEFAULT_DETECTOR)
    faces = {}
    for name in PHOTOS:
        photo = load_image(folder / name)
        faces[name] = prepare_photo(photo, folder / name, name, detector, False)[0]
    spec = landmark_spec(model, "dlib")
    camera = CameraConfig()
    for label, method in configs.items():
        secs, nmes, nmes_spec = [], [], []
        for name in PHOTOS:
            truth = read_pts((folder / name).with_suffix(".pts"))
            face = faces[name]
            alt = {k: face.aligned.transform.to_crop(v) for k, v in face.alt_lm68.items()}
            target = crops_target([face.aligned], model.mean_shape, (face.detector or None,), [alt])
            t0 = time.perf_counter()
            coeffs = method(target).coeffs
            secs.append(time.perf_counter() - t0)
            p = model.layout.split(coeffs)
            vertices, _ = model(p["id_coeff"], p["exp_coeff"], p["tex_coeff"])
            iod = np.linalg.norm(truth[36] - truth[45])
            for pts, out in (
                (fitted_landmarks(model, vertices, p["angles"], p["trans"], camera), nmes),
                (spec_landmarks(spec, vertices, p["angles"], p["trans"], camera), nmes_spec),
            ):
                pred = face.aligned.transform.to_original(pts[0].detach().numpy())
                out.append(float(np.linalg.norm(pred - truth, axis=1).mean() / iod))
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
        for kind, values in (("model vertices", nmes), ("dlib-calibrated points", nmes_spec)):
            per_photo = ", ".join(
                f"{n.split('.')[0]} {100 * e:.1f}" for n, e in zip(PHOTOS, values, strict=True)
            )
            rows.append(
                {
                    "section": "Fitting (reconstruct)",
                    "name": f"landmark reprojection NME ({kind}), {label}",
                    "value": 100 * float(np.mean(values)),
                    "unit": "% of inter-ocular",
                    "notes": f"fitted mesh's 68 landmarks ({kind}) vs hand-placed points; "
                    "per photo " + per_photo,
                }
            )
    return rows

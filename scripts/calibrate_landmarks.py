"""Where a landmark detector's points lie on a face model's surface, and how noisy they are.

    python scripts/calibrate_landmarks.py --textures DIR --detector dlib [--n 80] [--out F.json]

Renders faces of the model whose geometry is known (the synthetic engine with photo albedo,
``--textures``: textures registered on *hand-placed* landmarks, so that they do not already
encode the detector's own definition: ``make_photo_textures.py --shared ... --hand-only``),
runs the detector, and back-projects each inner landmark (17..67) onto the true surface
through the render's z-buffer. The landmark's embedding is the median of those surface points
in the model's mean shape, snapped onto its surface (triangle + barycentrics). Then the
residuals of the detections against the embedding's projections give a per-landmark noise
``sigma_px`` (224-crop pixels) per signed-yaw bin (``--yaw-bins``, edges in degrees: the far
side's points of a turned face are the noisiest); the jaw points' against the silhouette
contour of the true geometry (:mod:`facerecon.fit.contour`). Positions come from faces with
``|yaw| <= --position-yaw`` (where the points are visible), the noise from all faces up to
``--max-yaw``; no occluders.

The output (default ``src/facerecon/fit/landmarks/MODEL_DETECTOR.json``) is read by
:func:`facerecon.fit.landmark_spec`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from facerecon.data.synthetic import SynthConfig, SyntheticFaces
    from facerecon.detect import DetectorConfig, align, make_detector
    from facerecon.evaluate.geometry import SurfaceQuery
    from facerecon.fit import landmark_spec, spec_landmarks
    from facerecon.morphable import load_face_model
    from facerecon.render import CameraConfig, project, rasterize

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--textures", required=True, help="hand-registered photo textures")
    ap.add_argument("--detector", default="dlib", choices=("dlib", "mediapipe"))
    ap.add_argument("--model", default="bfm-lite")
    ap.add_argument("--n", type=int, default=80, help="identities (4 views each)")
    ap.add_argument("--max-yaw", type=float, default=60.0)
    ap.add_argument("--position-yaw", type=float, default=30.0)
    ap.add_argument("--yaw-bins", default="-60,-40,-20,0,20,40,60")
    ap.add_argument("--seed", type=int, default=501)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    t0 = time.time()
    model = load_face_model(args.model)
    cfg = SynthConfig(
        max_yaw_deg=args.max_yaw, max_pitch_deg=15, max_roll_deg=10, occluder_prob=0.0,
        albedo="photo", texture_dir=args.textures,
    )  # fmt: skip
    engine = SyntheticFaces(model, cfg, seed=args.seed)
    det = make_detector(DetectorConfig(backend=args.detector))
    mean = model.mean_shape.double().numpy()
    tri = model.triangles.numpy()
    zoom = 4
    samples, canon = [], []
    for i in range(args.n):
        for c in range(4):
            s = engine.sample(i, c)
            faces = det.detect(s.image)
            if not faces:
                continue
            cam = CameraConfig(**s.camera)
            # the true surface under each detected point: z-buffer of the true camera-frame mesh
            vc = torch.from_numpy(s.vertices_camera / cam.mm_per_unit).double()[None]
            vc[..., 2] += cam.cam_dist  # back to scene coordinates
            uv, depth = project(vc, cam)
            frag = rasterize(uv * zoom + (zoom - 1) / 2, depth, model.triangles, cam.size * zoom)
            px = np.clip(np.round(faces[0].lm68 * zoom + (zoom - 1) / 2), 0, cam.size * zoom - 1)
            px = px.astype(np.int64)
            f = frag.face_idx[0][px[:, 1], px[:, 0]].numpy()
            b = frag.bary[0][px[:, 1], px[:, 0]].numpy()
            p = np.full((68, 3), np.nan)
            hit = f >= 0
            p[hit] = np.einsum("kj,kjd->kd", b[hit], mean[tri[f[hit]]])
            if abs(np.degrees(s.coeffs["angles"][1])) <= args.position_yaw:
                canon.append(p)
            samples.append((s, faces[0].lm68))
    canon = np.array(canon)
    med = np.nanmedian(canon, axis=0)
    query = SurfaceQuery(mean, tri)
    inner = np.arange(17, 68)
    hitq = query.closest(med[inner])
    lm_vertices = model.landmarks68.numpy()
    index = np.stack([lm_vertices] * 3, axis=1)  # uncalibrated rows (the jaw): the vertex
    weight = np.zeros((68, 3))
    weight[:, 0] = 1.0
    index[inner] = tri[hitq.triangle]
    weight[inner] = hitq.bary
    calibrated = {"index": index, "weight": weight}
    # noise: detections vs the calibrated points (jaw: contour) projected with the true pose
    res = []
    for s, lm in samples:
        a = align(s.image, lm)
        coeffs = s.coeffs
        v = torch.from_numpy(s.vertices_model).float()[None]
        angles = torch.from_numpy(coeffs["angles"])[None]
        trans = torch.from_numpy(coeffs["trans"])[None]
        spec = landmark_spec(model, calibrated=calibrated)
        pred = spec_landmarks(spec, v, angles, trans, CameraConfig(**s.camera))[0].numpy()
        scale = a.transform.scale  # render pixels -> 224-crop pixels
        res.append((lm - pred) * scale)
    res = np.array(res)
    yaw = np.array([np.degrees(s.coeffs["angles"][1]) for s, _ in samples])
    edges = np.array([float(e) for e in args.yaw_bins.split(",")])
    centres = 0.5 * (edges[1:] + edges[:-1])
    frontal = np.abs(yaw) <= args.position_yaw
    bias = np.median(res[frontal], axis=0)
    sigma = np.sqrt(((res[frontal] - bias) ** 2).sum(-1).mean(0) / 2)  # per axis
    sigma_bins = []
    for lo, hi in itertools.pairwise(edges):
        sel = (yaw >= lo) & (yaw < hi)
        if sel.sum() < 5:
            sigma_bins.append(sigma)
            continue
        # robust spread (MAD -> sigma), so that one lost face does not set a bin's noise
        err = np.linalg.norm(res[sel] - bias, axis=-1)
        sigma_bins.append(np.median(err, axis=0) / 1.1774)  # median of a 2D Rayleigh
    sigma_bins = np.array(sigma_bins)
    out = args.out or ROOT / "src/facerecon/fit/landmarks" / f"{args.model}_{args.detector}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    shift = np.linalg.norm(med[inner] - mean[model.landmarks68.numpy()[inner]], axis=1)
    doc = {
        "model": args.model,
        "detector": args.detector,
        "command": "python scripts/calibrate_landmarks.py "
        f"--textures {Path(args.textures).name} --detector {args.detector} --n {args.n} "
        f"--max-yaw {args.max_yaw:g} --seed {args.seed}",
        "faces": len(samples),
        "index": index.tolist(),
        "weight": np.round(weight, 6).tolist(),
        "sigma_px": np.round(sigma, 3).tolist(),
        "sigma_yaw_deg": np.round(centres, 2).tolist(),
        "sigma_px_by_yaw": np.round(sigma_bins, 3).tolist(),
        "residual_bias_px": np.round(np.linalg.norm(bias, axis=1), 3).tolist(),
        "shift_mm": np.round(shift, 2).tolist(),
    }
    out.write_text(json.dumps(doc))
    print(
        f"{len(samples)} faces in {time.time() - t0:.0f} s; inner points moved by "
        f"{shift.mean():.2f} mm on average (max {shift.max():.2f}); sigma px: jaw "
        f"{sigma[:17].mean():.2f}, brows {sigma[17:27].mean():.2f}, nose {sigma[27:36].mean():.2f},"
        f" eyes {sigma[36:48].mean():.2f}, mouth {sigma[48:].mean():.2f}; -> {out}"
    )
    for c, row in zip(centres, sigma_bins, strict=True):
        print(f"  yaw {c:+.0f}: jaw {row[:17].mean():.1f} inner {row[17:].mean():.1f} px "
              f"(n={int(((yaw >= c - 10) & (yaw < c + 10)).sum())})")  # fmt: skip


if __name__ == "__main__":
    main()

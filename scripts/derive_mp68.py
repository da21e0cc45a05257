"""Derive the MediaPipe-478 -> iBUG-68 table (src/facerecon/detect/mp68_table.json).

For every face in a few photos (the 300-W sample photos with hand-placed .pts, the bundled
astronaut, matplotlib's grace_hopper.jpg), under flips, in-plane rotations and rescaling, we collect
the raw 478-point mesh (MediaPipe full-range detector + Face Mesh on the face crop) and two 68-point
targets: dlib's shape predictor and, where available, the hand annotation (300-W .pts files are
1-based; 1 is subtracted). Errors are normalised by the target's outer-eye-corner distance.

For each iBUG point we take the 12 mesh vertices with the lowest mean error and fit non-negative
weights summing to one (NNLS with a heavily weighted sum-to-one row), drop weights below 0.05 and
refit, so each point is a convex combination of at most ``--max-verts`` vertices. Leave-one-face-out
errors per group are stored in the json with the table.

Usage: python scripts/derive_mp68.py [--data /work/shared/data/faces_68pt] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import nnls

from facerecon.detect.faces import DetectorConfig, FaceDetector, make_detector
from facerecon.detect.image_io import load_image
from facerecon.detect.mediapipe_backend import mesh_in_crop
from facerecon.io.pts import read_pts

REPO = Path(__file__).resolve().parents[1]

# iBUG-68 left/right mirror permutation (0-based): point i of a flipped image is point FLIP[i].
FLIP68 = np.array(
    list(range(16, -1, -1))
    + list(range(26, 21, -1))
    + list(range(21, 16, -1))
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)
GROUPS = {
    "jaw": range(0, 17),
    "brows": range(17, 27),
    "nose": range(27, 36),
    "eyes": range(36, 48),
    "mouth_outer": range(48, 60),
    "mouth_inner": range(60, 68),
}


def augment(image: np.ndarray, angle: float, scale: float, flip: bool):
    """Rotate/scale about the centre (+ optional mirror); returns image and point mapper."""
    h, w = image.shape[:2]
    M = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, scale)
    if flip:
        F = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        M = (F @ np.vstack([M, [0, 0, 1]]))[:2]
    out = cv2.warpAffine(image, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def mapper(pts: np.ndarray) -> np.ndarray:
        p = pts @ M[:, :2].T + M[:, 2]
        return p[FLIP68] if flip else p

    return out, mapper


def iod(lm: np.ndarray) -> float:
    return float(np.linalg.norm(lm[36] - lm[45]))


def collect(sources, det: FaceDetector, mp_det, mp_mesh):
    """Samples: list of dicts(face, aug, mesh (478,2), dlib (68,2), pts (68,2)|None)."""
    samples = []
    for name, image, annot in sources:
        base = det.detect(image, all_faces=True)
        for angle in (-15.0, 0.0, 15.0):
            for scale in (1.0, 0.7):
                for flip in (False, True):
                    im, mapper = augment(image, angle, scale, flip)
                    faces = det.detect(im, all_faces=True)
                    res = mp_det.process(im)
                    h, w = im.shape[:2]
                    boxes = []
                    for d in res.detections or []:
                        rb = d.location_data.relative_bounding_box
                        boxes.append(
                            np.array(
                                [
                                    rb.xmin * w,
                                    rb.ymin * h,
                                    (rb.xmin + rb.width) * w,
                                    (rb.ymin + rb.height) * h,
                                ]
                            )
                        )
                    for fi, bf in enumerate(base):
                        ref = mapper(bf.lm68)
                        r = iod(ref)
                        if r < 20:
                            continue
                        c = ref.mean(0)
                        dl = [f for f in faces if np.linalg.norm(f.lm68.mean(0) - c) < 0.5 * r]
                        bx = [b for b in boxes if np.linalg.norm((b[:2] + b[2:]) / 2 - c) < 0.8 * r]
                        if not dl or not bx:
                            continue
                        mesh = mesh_in_crop(mp_mesh, im, bx[0])
                        if mesh is None:
                            continue
                        pts = None
                        if annot is not None:
                            a = mapper(annot)
                            if np.linalg.norm(a.mean(0) - c) < 0.3 * r:
                                pts = a
                        samples.append(
                            dict(
                                face=f"{name}#{fi}",
                                orig=(angle == 0.0 and scale == 1.0 and not flip),
                                mesh=mesh[:, :2],
                                dlib=dl[0].lm68,
                                pts=pts,
                            )
                        )
    return samples


def targets(samples, k: int, use_pts: bool = True):
    """Stacked mesh (S, 478, 2), target (S, 2), inv-iod (S,) for iBUG point k."""
    M, T, s = [], [], []
    for smp in samples:
        tgts = [smp["dlib"]] + ([smp["pts"]] if use_pts and smp["pts"] is not None else [])
        for t in tgts:
            M.append(smp["mesh"])
            T.append(t[k])
            s.append(1.0 / iod(t))
    return np.array(M), np.array(T), np.array(s)


def fit_point(samples, k: int, n_cand: int = 12, max_verts: int = 4):
    """Vertex indices and convex weights for iBUG point k."""
    M, T, s = targets(samples, k)
    err = np.linalg.norm(M - T[:, None, :], axis=-1) * s[:, None]  # (S, 478)
    cand = np.argsort(err.mean(0))[:n_cand]

    def solve(c: np.ndarray) -> np.ndarray:
        A = (M[:, c, :] * s[:, None, None]).transpose(0, 2, 1).reshape(-1, len(c))
        b = (T * s[:, None]).reshape(-1)
        lam = 100.0
        A = np.vstack([A, lam * np.ones((1, len(c)))])
        b = np.concatenate([b, [lam]])
        w, _ = nnls(A, b)
        return w / w.sum()

    w = solve(cand)
    keep = np.argsort(-w)[:max_verts]
    keep = keep[w[keep] >= 0.05]
    c = cand[keep]
    w = solve(c)
    return [int(v) for v in c], [float(x) for x in w], int(cand[0])


def apply(table, mesh: np.ndarray) -> np.ndarray:
    return np.stack([(mesh[v] * np.array(w)[:, None]).sum(0) for v, w in table])


def group_errors(samples, table, which: str):
    errs = []
    for smp in samples:
        t = smp[which]
        if t is None or not smp["orig"]:
            continue
        errs.append(np.linalg.norm(apply(table, smp["mesh"]) - t, axis=1) / iod(t))
    if not errs:
        return None
    e = np.mean(errs, axis=0)
    out = {g: round(float(e[list(r)].mean()), 4) for g, r in GROUPS.items()}
    out["all"] = round(float(e.mean()), 4)
    out["n_faces"] = len(errs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "faces_68pt"))
    ap.add_argument("--out", default=str(REPO / "src/facerecon/detect/mp68_table.json"))
    ap.add_argument("--max-verts", type=int, default=4)
    args = ap.parse_args()

    data = Path(args.data)
    import matplotlib

    sources = []
    for stem, ext in (("einstein", "jpg"), ("breakingbad", "jpg"), ("takeo", "ppm")):
        im = load_image(data / f"{stem}.{ext}")
        pts = read_pts(data / f"{stem}.pts")
        f = 1024 / max(im.shape[:2])
        if f < 1:  # keep the script fast: work at <= 1024 px
            nh, nw = round(im.shape[0] * f), round(im.shape[1] * f)
            fx, fy = nw / im.shape[1], nh / im.shape[0]
            im = cv2.resize(im, (nw, nh), interpolation=cv2.INTER_AREA)
            pts = np.stack([(pts[:, 0] + 0.5) * fx - 0.5, (pts[:, 1] + 0.5) * fy - 0.5], -1)
        sources.append((stem, im, pts))
    sources.append(("astronaut", load_image(REPO / "src/facerecon/assets/astronaut.jpg"), None))
    mpl = Path(os.path.dirname(matplotlib.__file__)) / "mpl-data/sample_data/grace_hopper.jpg"
    sources.append(("grace_hopper", load_image(mpl), None))

    det = make_detector(DetectorConfig(backend="dlib", detector="hog"))
    mpd = make_detector(DetectorConfig(backend="mediapipe"))
    mp_det, mp_mesh = mpd.models()
    samples = collect(sources, det, mp_det, mp_mesh)
    faces = sorted({s["face"] for s in samples})
    print(f"{len(samples)} samples from {len(faces)} faces: {faces}")

    table = [fit_point(samples, k, max_verts=args.max_verts)[:2] for k in range(68)]
    single = [([fit_point(samples, k, max_verts=1)[2]], [1.0]) for k in range(68)]

    # Leave-one-face-out: fit without a face, evaluate on its un-augmented sample(s).
    lofo_dlib, lofo_pts = [], []
    for face in faces:
        train = [s for s in samples if s["face"] != face]
        test = [s for s in samples if s["face"] == face]
        tab = [fit_point(train, k, max_verts=args.max_verts)[:2] for k in range(68)]
        for which, acc in (("dlib", lofo_dlib), ("pts", lofo_pts)):
            e = group_errors(test, tab, which)
            if e is not None:
                acc.append(e)

    def mean_of(rows):
        keys = [*GROUPS, "all"]
        return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in keys} if rows else None

    stats = {
        "samples": len(samples),
        "faces": faces,
        "fit_nme_vs_dlib": group_errors(samples, table, "dlib"),
        "fit_nme_vs_pts": group_errors(samples, table, "pts"),
        "single_vertex_nme_vs_pts": group_errors(samples, single, "pts"),
        "leave_one_face_out_nme_vs_dlib": mean_of(lofo_dlib),
        "leave_one_face_out_nme_vs_pts": mean_of(lofo_pts),
    }
    out = {
        "description": (
            "MediaPipe Face Mesh 478 -> iBUG 68: each point is sum_j weights[j] * "
            "mesh[vertices[j]] (weights >= 0, sum 1). Derived by scripts/derive_mp68.py; "
            "NME = mean point error / outer-eye-corner distance, on un-augmented faces."
        ),
        "version": 1,
        "points": [
            {"ibug": k, "vertices": v, "weights": [round(x, 5) for x in w]}
            for k, (v, w) in enumerate(table)
        ],
        "stats": stats,
    }
    # Renormalise the rounded weights so rows sum to one exactly (to 1e-9).
    for p in out["points"]:
        s = sum(p["weights"])
        p["weights"] = [x / s for x in p["weights"]]
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(stats, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

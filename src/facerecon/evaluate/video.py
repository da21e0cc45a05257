"""Pose and video benchmarks on synthetic faces with known pose and shape.

* :func:`pose_benchmark`: still renders with yaw up to 90 degrees, aligned on their true
  landmarks (so every method sees the same crop, and the fit gets the true 68 points: an upper
  bound for the fit at yaws where real detectors fail), per yaw bin: rotation error (geodesic
  angle between the predicted and the true rotation, degrees) and the neutral shape's error
  (the paper's protocol: ICP with scale, point-to-plane RMSE within 95 mm of the nose tip)
  beside the average face's.
* :func:`video_benchmark`: a synthetic clip (:mod:`facerecon.data.synthetic_video`: a head
  turning +-``max_yaw`` and talking) through the product's video path
  (:func:`facerecon.clip.estimate_clip`: decode, track, align, estimate), scored per frame:
  shape (posed identity + expression against the truth), identity spread across frames,
  rotation error and jitter. Jitter is the frame-to-frame change minus the true one: for the
  rotation, the angle of ``dR_pred dR_true^T`` with ``dR = R[t+1] R[t]^T`` (degrees); for the
  position, the change of the 68 projected landmarks in the photo minus the true change, in
  mm (pixels scaled by the true inter-ocular distance in mm over pixels).

The truth rotation is the render camera's; the methods' is the aligned crop's, whose optical
axis passes through the crop centre: for a face off the photo's centre they differ by the angle
of that offset (at most about 1 degree here), which these figures include.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "PoseBenchmarkConfig",
    "VideoBenchmarkConfig",
    "geodesic_deg",
    "pose_benchmark",
    "rotation_jitter_deg",
    "video_benchmark",
]

YAW_BINS = (0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 90.0)


def geodesic_deg(R1: np.ndarray, R2: np.ndarray) -> np.ndarray:
    """``(...)`` angle in degrees of ``R1 R2^T`` for rotations ``(..., 3, 3)``."""
    m = np.einsum("...ij,...kj->...ik", R1, R2)
    c = (np.trace(m, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.rad2deg(np.arccos(np.clip(c, -1.0, 1.0)))


def rotation_jitter_deg(R_pred: np.ndarray, R_true: np.ndarray) -> np.ndarray:
    """``(F - 1,)`` per step: angle of ``dR_pred dR_true^T``, ``dR = R[t+1] R[t]^T``."""
    dp = np.einsum("tij,tkj->tik", R_pred[1:], R_pred[:-1])
    dt = np.einsum("tij,tkj->tik", R_true[1:], R_true[:-1])
    return geodesic_deg(dp, dt)


def _rotations(angles: np.ndarray) -> np.ndarray:
    from facerecon.geometry import euler_matrix

    return np.stack([euler_matrix(a) for a in np.asarray(angles, np.float64)])


def _shape_rmse(model, vertices: np.ndarray, truth: np.ndarray, tri: np.ndarray, lm_idx, nose):
    from facerecon.evaluate.metrics import evaluate_mesh

    res = evaluate_mesh(
        vertices, tri, truth, tri, gt_landmarks=lm_idx, pred_landmarks=lm_idx, nose_index=nose
    )
    return res.rmse_plane


# ---------------------------------------------------------------------------- stills
@dataclass
class PoseBenchmarkConfig:
    """Still renders per yaw bin (``per_bin`` faces, yaw sign alternating), held-out seed."""

    per_bin: int = 6
    bins: tuple[float, ...] = YAW_BINS
    seed: int = 2027
    image_size: int = 256
    max_pitch_deg: float = 15.0
    max_roll_deg: float = 8.0
    shape_every: int = 1  # score the shape of every n-th face (ICP is the slow part)
    extra: dict[str, Any] = field(default_factory=dict)  # more SynthConfig fields


def pose_benchmark(
    model,
    methods: dict[str, Any],
    config: PoseBenchmarkConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Rotation error and shape per yaw bin for registered methods (``name -> Method``).

    Returns:
        ``{"rows": [{"method", "bin", "rot_deg" (median), "rot_mean", "shape_mm",
        "mean_face_mm", "n"}], "seconds": {method: s per face}}``.
    """
    import time

    from facerecon.data.synthetic import SynthConfig, SyntheticFaces
    from facerecon.detect import align
    from facerecon.methods import crops_target

    cfg = config or PoseBenchmarkConfig()
    faces = SyntheticFaces(
        model, SynthConfig(image_size=cfg.image_size, occluder_prob=0.0, **cfg.extra), seed=cfg.seed
    )
    rng = np.random.default_rng(cfg.seed)
    tri = model.triangles.cpu().numpy()
    lm_idx = model.landmarks68.cpu().numpy()
    nose = int(lm_idx[30])
    samples: list[tuple[str, Any]] = []
    for b in range(len(cfg.bins) - 1):
        lo, hi = cfg.bins[b], cfg.bins[b + 1]
        for k in range(cfg.per_bin):
            yaw = rng.uniform(lo, hi) * (1 if k % 2 == 0 else -1)
            a = np.deg2rad(
                [
                    rng.uniform(-cfg.max_pitch_deg, cfg.max_pitch_deg),
                    yaw,
                    rng.uniform(-cfg.max_roll_deg, cfg.max_roll_deg),
                ]
            )
            ident = 50000 + b * 100 + k
            exp = faces.draw_expression(rng)
            s = next(iter(faces.sequence(ident, a[None], exp[None])))
            samples.append((f"{lo:g}-{hi:g}", s))
    crops = [align(np.asarray(s.image), np.asarray(s.lm68), size=224) for _, s in samples]
    truth_R = _rotations(np.stack([s.coeffs["angles"] for _, s in samples]))
    mean_face = model.mean_shape.cpu().numpy()
    records: list[dict] = []
    seconds: dict[str, float] = {}
    for name, method in methods.items():
        t0 = time.perf_counter()
        coeffs = []
        for c in range(0, len(crops), 16):
            target = crops_target(crops[c : c + 16], model.mean_shape)
            coeffs.append(method(target, False).coeffs.detach().cpu().double().numpy())
        coeffs = np.concatenate(coeffs)
        seconds[name] = (time.perf_counter() - t0) / len(crops)
        parts = model.layout.split(torch.from_numpy(coeffs))
        err = geodesic_deg(_rotations(parts["angles"].numpy()), truth_R)
        for i, (bin_name, s) in enumerate(samples):
            rec = {"method": name, "bin": bin_name, "rot_deg": float(err[i])}
            if i % cfg.shape_every == 0:
                with torch.no_grad():
                    idc = parts["id_coeff"][i : i + 1].to(model.mean_shape)
                    v = model.shape(idc, torch.zeros(1, model.layout.n_exp).to(idc))[0]
                gt = np.asarray(s.vertices_neutral, np.float64)
                rec["shape_mm"] = _shape_rmse(model, v.cpu().numpy(), gt, tri, lm_idx, nose)
                if name == next(iter(methods)):
                    rec["mean_face_mm"] = _shape_rmse(model, mean_face, gt, tri, lm_idx, nose)
            records.append(rec)
        if progress:
            progress(f"pose benchmark: {name}: median {np.median(err):.1f} deg")
    mean_by_bin: dict[str, list[float]] = {}
    for r in records:
        if "mean_face_mm" in r:
            mean_by_bin.setdefault(r["bin"], []).append(r["mean_face_mm"])
    rows = []
    for name in methods:
        for b in dict.fromkeys(bn for bn, _ in samples):
            rs = [r for r in records if r["method"] == name and r["bin"] == b]
            sh = [r["shape_mm"] for r in rs if "shape_mm" in r]
            rows.append(
                {
                    "method": name,
                    "bin": b,
                    "n": len(rs),
                    "rot_deg": float(np.median([r["rot_deg"] for r in rs])),
                    "rot_mean": float(np.mean([r["rot_deg"] for r in rs])),
                    "shape_mm": float(np.mean(sh)) if sh else math.nan,
                    "mean_face_mm": float(np.mean(mean_by_bin.get(b, [math.nan]))),
                }
            )
    return {"rows": rows, "seconds": seconds}


# ---------------------------------------------------------------------------- video
@dataclass
class VideoBenchmarkConfig:
    """Synthetic clips: ``clips`` identities, ``frames`` frames at ``fps``, head turning
    +-``max_yaw_deg``; shapes scored every ``shape_every`` frames."""

    clips: int = 2
    frames: int = 50
    fps: float = 25.0
    max_yaw_deg: float = 60.0
    image_size: int = 320
    seed: int = 2028
    shape_every: int = 5
    work_dir: str | None = None
    smoothers: tuple[str, ...] = ("none", "one-euro", "gaussian", "poly")
    slow_clips: int = 1  # methods named in ``slow`` run on this many clips only
    slow: tuple[str, ...] = ("fit",)
    temporal: float = 1e-4  # the joint fit's acceleration weight (FitConfig.video)
    extra: dict[str, Any] = field(default_factory=dict)


def _landmarks_photo(model, coeffs: np.ndarray, crop_to_original: np.ndarray) -> np.ndarray:
    """``(F, 68, 2)`` model landmarks of per-frame coefficients projected into the photo: the
    68 fixed landmark vertices, as the clips' truth ``lm68`` is made (not the silhouette-following
    jaw points of :func:`facerecon.fit.fitted_landmarks`' contour: those are other points on
    the jaw, and their switching from vertex to vertex as the head turns added 1.5-2 mm of
    position jitter on the jaw points that no estimate causes)."""
    from facerecon.fit import fitted_landmarks
    from facerecon.render import CameraConfig

    out = np.full((len(coeffs), 68, 2), np.nan)
    ok = np.isfinite(coeffs).all(1)
    if not ok.any():
        return out
    parts = model.layout.split(torch.from_numpy(coeffs[ok]).to(model.mean_shape))
    with torch.no_grad():
        v = model.shape(parts["id_coeff"], parts["exp_coeff"])
        uv = fitted_landmarks(
            model, v, parts["angles"], parts["trans"], CameraConfig(), contour=False
        )
    uv = uv.cpu().double().numpy()
    m = crop_to_original[ok]
    out[ok] = np.einsum("fij,fkj->fki", m[:, :, :2], uv) + m[:, None, :, 2]
    return out


def score_clip(
    model, coeffs: np.ndarray, crop_to_original: np.ndarray, truth: dict, shape_every: int = 5
) -> dict[str, float]:
    """Per-frame scores of ``coeffs (F, layout.size)`` against a synthetic clip's truth."""
    lay = model.layout
    sl = lay.slices()
    ok = np.isfinite(coeffs).all(1)
    R_pred = _rotations(np.where(ok[:, None], coeffs[:, sl["angles"]], 0.0))
    R_true = _rotations(truth["angles"])
    rot = geodesic_deg(R_pred, R_true)[ok]
    both = ok[1:] & ok[:-1]
    rj = rotation_jitter_deg(R_pred, R_true)[both]
    lm = _landmarks_photo(model, coeffs, crop_to_original)
    tl = truth["lm68"]
    iod_px = np.linalg.norm(tl[:, 36] - tl[:, 45], axis=1)
    lm_idx = model.landmarks68.cpu().numpy()
    neutral = truth["neutral"]
    iod_mm = float(np.linalg.norm(neutral[lm_idx[36]] - neutral[lm_idx[45]]))
    mm_per_px = iod_mm / iod_px
    dpos = (lm[1:] - lm[:-1]) - (tl[1:] - tl[:-1])
    pj = (np.linalg.norm(dpos, axis=-1).mean(-1) * mm_per_px[1:])[both]
    nme = (np.linalg.norm(lm - tl, axis=-1).mean(-1) / iod_px)[ok]
    # shapes: posed (identity + expression) per scored frame, identity spread over frames
    tri = model.triangles.cpu().numpy()
    nose = int(lm_idx[30])
    shapes, neutrals = [], []
    ids = torch.from_numpy(np.where(ok[:, None], coeffs[:, sl["id_coeff"]], 0.0)).to(
        model.mean_shape
    )
    exps = torch.from_numpy(np.where(ok[:, None], coeffs[:, sl["exp_coeff"]], 0.0)).to(ids)
    true_exp = torch.from_numpy(truth["exp_coeff"]).to(ids)
    true_id = torch.from_numpy(truth["id_coeff"]).to(ids)[None]
    with torch.no_grad():
        nv = model.shape(ids, torch.zeros_like(exps)).cpu().numpy()
    for f in np.where(ok)[0][::shape_every]:
        with torch.no_grad():
            v = model.shape(ids[f : f + 1], exps[f : f + 1])[0].cpu().numpy()
            gt = model.shape(true_id, true_exp[f : f + 1])[0].cpu().numpy()
        shapes.append(_shape_rmse(model, v, gt, tri, lm_idx, nose))
        neutrals.append(nv[f])
    nvs = nv[ok]
    spread = float(np.linalg.norm(nvs - nvs.mean(0), axis=-1).mean()) if len(nvs) else math.nan
    return {
        "frames_scored": int(ok.sum()),
        "rot_deg": float(np.median(rot)),
        "rot_mean_deg": float(rot.mean()),
        "rot_jitter_deg": float(rj.mean()) if len(rj) else math.nan,
        "pos_jitter_mm": float(np.nanmean(pj)) if len(pj) else math.nan,
        "nme": float(np.nanmean(nme)),
        "shape_mm": float(np.mean(shapes)) if shapes else math.nan,
        "id_spread_mm": spread,
    }


def video_benchmark(
    model,
    methods: dict[str, Any],
    config: VideoBenchmarkConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Per method: the per-frame estimate (``<name> per-frame``: no clip identity, no
    smoothing) and the video path with each smoother (``<name> video <smoother>``), averaged
    over the clips; plus the average face's shape and the frames per second of the estimate.
    """
    import tempfile
    import time

    from facerecon.clip import ClipOptions, clip_detector, estimate_clip, smooth_coeffs
    from facerecon.data.synthetic import SynthConfig, SyntheticFaces
    from facerecon.data.synthetic_video import write_synthetic_clip
    from facerecon.detect.track import FaceTracker

    cfg = config or VideoBenchmarkConfig()
    work = Path(cfg.work_dir or tempfile.mkdtemp(prefix="facerecon_video_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    faces = SyntheticFaces(
        model, SynthConfig(image_size=cfg.image_size, occluder_prob=0.0, **cfg.extra), seed=cfg.seed
    )
    clips = []
    for c in range(cfg.clips):
        path = work / f"clip{c}.mp4"
        truth = write_synthetic_clip(
            path, faces, 60000 + c, cfg.frames, cfg.fps, cfg.max_yaw_deg, seed=cfg.seed
        )
        clips.append((path, truth))
    tri = model.triangles.cpu().numpy()
    lm_idx = model.landmarks68.cpu().numpy()
    mean_face = model.mean_shape.cpu().numpy()
    mean_mm = []
    for _, truth in clips:
        for f in range(0, cfg.frames, cfg.shape_every):
            with torch.no_grad():
                gt = model.shape(
                    torch.from_numpy(truth["id_coeff"]).to(model.mean_shape)[None],
                    torch.from_numpy(truth["exp_coeff"][f : f + 1]).to(model.mean_shape),
                )
            mean_mm.append(
                _shape_rmse(model, mean_face, gt[0].cpu().numpy(), tri, lm_idx, int(lm_idx[30]))
            )
    scores: dict[str, list[dict]] = {}
    fps: dict[str, list[float]] = {}
    from facerecon.clip import video_method
    from facerecon.methods.fit import FitMethod
    from facerecon.methods.network import AutoMethod

    for name, method in methods.items():
        fits = isinstance(method, (FitMethod, AutoMethod))
        use = clips[: cfg.slow_clips] if name in cfg.slow else clips
        for path, truth in use:
            # fits: frame by frame (the per-frame row), then jointly per batch (the video rows)
            runs = [(False, method)]
            if fits:
                runs.append((True, video_method(copy.deepcopy(method), cfg.temporal)))
            for joint, m in runs:
                tracker = FaceTracker(clip_detector("auto"))
                opts = ClipOptions(smoothing="none", batch_size=16, joint=joint)
                t0 = time.perf_counter()
                res = estimate_clip(path, opts, m, model, tracker)
                fps.setdefault(f"{name}{' joint' if joint else ''}", []).append(
                    len(res.status) / (time.perf_counter() - t0)
                )
                tracker.close()
                if not joint:
                    scores.setdefault(f"{name} per-frame", []).append(
                        score_clip(
                            model, res.coeffs_raw, res.crop_to_original, truth, cfg.shape_every
                        )
                    )
                if fits and not joint:
                    continue
                tag = f"{name} {'joint-fit video' if joint else 'video'}"
                for sm in cfg.smoothers:
                    co = smooth_coeffs(
                        res.coeffs, model.layout, sm, res.fps, None, res.crop_to_original, res.size
                    )
                    scores.setdefault(f"{tag} {sm}", []).append(
                        score_clip(model, co, res.crop_to_original, truth, cfg.shape_every)
                    )
            if progress:
                progress(f"video benchmark: {name}: {path.name} done")
    summary = {
        k: {m: float(np.nanmean([r[m] for r in v])) for m in v[0]} for k, v in scores.items()
    }
    return {
        "summary": summary,
        "mean_face_mm": float(np.mean(mean_mm)),
        "frames_per_second": {k: float(np.median(v)) for k, v in fps.items()},
        "clips": cfg.clips,
        "frames": cfg.frames,
    }

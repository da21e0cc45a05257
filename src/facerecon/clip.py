"""Video reconstruction: one identity per clip, per-frame expression and pose, smoothed in time.

``facerecon reconstruct clip.mp4`` (:func:`run_clip`). Data flows one way:

1. **Decode** (:mod:`facerecon.io.video`, OpenCV/FFmpeg): every frame or ``--fps N``.
2. **Track** (:class:`facerecon.detect.track.FaceTracker`): the largest face of the first frame
   that has one, followed through the clip from the previous frame's landmarks and detected
   again when lost; **align** each frame's face to the 224 crop.
3. **Estimate**, in batches of ``batch_size`` frames, with a registered method
   (:mod:`facerecon.methods`): ``pgn`` (pose from predicted 3D landmarks; the default when its
   weights ship), ``rnet``, or the per-frame fits ``auto`` / ``fit`` (slow).
4. **One identity**: the mean of the frames' identities (with ``rnet`` and a C-Net: its
   element-wise confidence-weighted mean, the paper's S4) and the mean albedo; with ``pgn``
   every frame's pose is then solved again for that shape (pose and shape stay consistent).
5. **Smooth** expression, pose and lighting in time (:mod:`facerecon.temporal`: ``poly``, a
   zero-phase local quadratic, by default; ``gaussian``, ``one-euro`` causal, or ``none``); the
   translation in one camera of the photo (:func:`trans_in_photo`), not in the frames' crops.
6. **Write** (never over existing files unless ``overwrite``): ``NAME_frames.npz`` (per-frame
   arrays, NaN where no face), ``NAME_neutral.obj`` (the clip's identity, expression 0),
   ``NAME_anim.glb`` (the neutral mesh with expression morph targets and the head pose, in the
   photo's camera, as node animation; the report plays it), ``NAME_overlay.mp4`` (the fitted
   face drawn over every kept frame) and ``NAME_clip.json`` (per-frame status, timings).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facerecon.errors import FaceReconError, ImageError

__all__ = [
    "ClipOptions",
    "ClipResult",
    "clip_identity",
    "clip_outputs",
    "estimate_clip",
    "expression_targets",
    "matrix_to_quaternion",
    "photo_camera",
    "run_clip",
    "smooth_coeffs",
    "trans_in_photo",
]

STATUSES = ("detected", "tracked", "lost")


@dataclass
class ClipOptions:
    """What ``facerecon reconstruct clip.mp4`` does.

    Attributes:
        out_dir: output folder.
        model: face model.
        method: ``pgn`` / ``rnet`` / ``auto`` / ``fit``; None: ``pgn`` when PGN weights ship
            for the model, else ``rnet`` when R-Net weights do, else ``fit``.
        weights, pgn_weights, cnet, shipped: as :class:`facerecon.pipeline.ReconstructOptions`.
        fps: frames per second kept (None: all).
        max_frames: stop after this many kept frames.
        smoothing, sigma: :func:`facerecon.temporal.smooth_track` (sigma in frames of the
            kept rate; None: the smoother's default). "poly" (the default) against
            "gaussian" on the synthetic video benchmark: rotation jitter 0.61 vs 0.91 deg at
            the same rotation error (BENCHMARKS.md "Accuracy: video").
        overlay: write the overlay video.
        self_track, passes: network methods (``pgn``, ``rnet``) follow the face with their own
            projected landmarks, ``passes`` estimates per frame (:class:`SelfTracker`; a second
            pass, re-aligned on the first one's landmarks, changed PGN's rotation error by
            under 0.2 degrees on two synthetic clips and doubled the network time); False
            aligns every frame on the tracker's 2D landmarks.
        joint: ``fit`` / ``auto``: fit each batch of consecutive frames jointly (one identity,
            :meth:`facerecon.fit.FitConfig.video`'s acceleration penalty of weight
            ``temporal``) instead of frame by frame.
        detector: ``--detector`` of the first and the re-detections.
        batch_size: frames per network / fit batch.
        device, overwrite, rasterizer, report, fast, perceptual: as for photos.
    """

    out_dir: Path = Path("facerecon_out")
    model: str = "bfm-lite"
    method: str | None = None
    weights: Path | None = None
    pgn_weights: Path | None = None
    cnet: Path | None = None
    shipped: bool = True
    fps: float | None = None
    max_frames: int | None = None
    smoothing: str = "poly"
    sigma: float | None = None
    overlay: bool = True
    joint: bool = True
    temporal: float = 1e-4
    self_track: bool = True
    passes: int = 1
    detector: str = "auto"
    batch_size: int = 32
    device: str = "cpu"
    overwrite: bool = False
    rasterizer: str = "torch"
    report: bool = True
    fast: bool = True
    perceptual: bool = False


@dataclass
class ClipResult:
    """One clip's reconstruction (arrays per kept frame ``F``; NaN rows where no face)."""

    name: str
    source: Path
    method: str
    fps: float
    frame_index: np.ndarray  # (F,) position in the file
    time: np.ndarray  # (F,) seconds
    status: list[str]  # per frame, :data:`STATUSES`
    coeffs: np.ndarray  # (F, layout.size) final: clip identity, smoothed
    coeffs_raw: np.ndarray  # (F, layout.size) per-frame estimates
    lm68: np.ndarray  # (F, 68, 2) tracked landmarks, photo pixels
    crop_to_original: np.ndarray  # (F, 2, 3)
    id_coeff: np.ndarray  # (n_id,)
    tex_coeff: np.ndarray  # (n_tex,)
    size: tuple[int, int]  # (width, height) of the frames
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> np.ndarray:
        return np.array([s != "lost" for s in self.status])


def resolve_clip_options(options: ClipOptions) -> ClipOptions:
    """Fill in the method and weights from what ships for the model."""
    from facerecon.nets.shipped import shipped_weights

    pgn = options.pgn_weights
    rnet = options.weights
    if options.shipped:
        pgn = pgn or shipped_weights("pgn", options.model)
        rnet = rnet or shipped_weights("rnet", options.model)
    method = options.method or ("pgn" if pgn else "rnet" if rnet else "fit")
    cnet = options.cnet
    if cnet is None and options.shipped and method == "rnet" and options.weights is None:
        cnet = shipped_weights("cnet", options.model)
    return dataclasses.replace(options, method=method, pgn_weights=pgn, weights=rnet, cnet=cnet)


def clip_outputs(out_dir: Path, name: str, overlay: bool = True) -> dict[str, Path]:
    """The files :func:`run_clip` writes for clip ``name``."""
    out = {
        "npz": out_dir / f"{name}_frames.npz",
        "neutral": out_dir / f"{name}_neutral.obj",
        "glb": out_dir / f"{name}_anim.glb",
        "json": out_dir / f"{name}_clip.json",
        "preview": out_dir / f"{name}_overlay.png",
    }
    if overlay:
        out["overlay"] = out_dir / f"{name}_overlay.mp4"
    return out


# ---------------------------------------------------------------------------- estimation
def estimate_clip(
    path: Path,
    options: ClipOptions,
    method,
    model,
    tracker,
    on_frame: Callable[[int, str], None] | None = None,
) -> ClipResult:
    """Decode, track, align and estimate every kept frame of ``path`` (steps 1-5)."""
    from facerecon.detect import align
    from facerecon.io.video import probe_video, read_frames
    from facerecon.methods import crops_target

    info = probe_video(path)
    t_start = time.perf_counter()
    timing = {"decode+track": 0.0, "align": 0.0, "network": 0.0}
    index, times, status, lms, crops_tf = [], [], [], [], []
    raw: list[np.ndarray] = []
    lm3d: list[np.ndarray] = []
    conf: list[np.ndarray] = []
    batch: list[Any] = []
    batch_rows: list[int] = []
    batch_detectors: list[str | None] = []  # which landmarker (the fit's calibration)
    size = (info.width, info.height)
    lay = model.layout

    def flush() -> None:
        if not batch:
            return
        t0 = time.perf_counter()
        target = crops_target(batch, model.mean_shape, tuple(batch_detectors))
        est, c = _estimate(method, target, options.joint)
        for k, row in enumerate(batch_rows):
            raw[row] = est.coeffs[k].detach().cpu().double().numpy()
            if est.lm3d is not None:
                lm3d[row] = est.lm3d[k].detach().cpu().double().numpy()
            if c is not None:
                conf[row] = c[k]
        batch.clear()
        batch_rows.clear()
        batch_detectors.clear()
        timing["network"] += time.perf_counter() - t0

    self_track = options.self_track and not _fits(method)
    follower = SelfTracker(tracker, method, model, options) if self_track else None
    t_read = time.perf_counter()
    for frame in read_frames(path, options.fps, options.max_frames):
        size = (frame.image.shape[1], frame.image.shape[0])
        row = len(index)
        index.append(frame.index)
        times.append(frame.time)
        raw.append(np.full(lay.size, np.nan))
        lm3d.append(np.full((68, 3), np.nan))
        conf.append(np.full(lay.n_id, np.nan))
        if follower is not None:  # the network follows the face with its own landmarks
            t1 = time.perf_counter()
            timing["decode+track"] += t1 - t_read
            got = follower.update(frame.image)
            timing["network"] += time.perf_counter() - t1 - follower.detect_seconds
            timing["decode+track"] += follower.detect_seconds
            status.append(got.status)
            lms.append(got.lm68)
            crops_tf.append(got.crop_to_original)
            if got.coeffs is not None:
                raw[row] = got.coeffs
                if got.lm3d is not None:
                    lm3d[row] = got.lm3d
                if got.conf is not None:
                    conf[row] = got.conf
        else:
            tr = tracker.update(frame.image)
            status.append(tr.status)
            t1 = time.perf_counter()
            timing["decode+track"] += t1 - t_read
            if tr.lm68 is None:
                lms.append(np.full((68, 2), np.nan))
                crops_tf.append(np.full((2, 3), np.nan))
            else:
                al = align(frame.image, tr.lm68)
                lms.append(np.asarray(tr.lm68, np.float64))
                crops_tf.append(np.asarray(al.transform.matrix_to_original))
                batch.append(al)
                batch_rows.append(row)
                batch_detectors.append(_landmarker(tr.detector))
            timing["align"] += time.perf_counter() - t1
            if len(batch) >= options.batch_size:
                flush()
        if on_frame is not None:
            on_frame(row, status[-1])
        t_read = time.perf_counter()
    flush()
    if not index:
        raise ImageError(f"{path}: the video has no decodable frame")
    raw_arr = np.stack(raw)
    ok = np.array([s != "lost" for s in status])
    if not ok.any():
        raise FaceReconError(f"{path}: no face found in any of {len(index)} frames")
    t0 = time.perf_counter()
    conf_arr = np.stack(conf) if any(np.isfinite(c).all() for c in conf) else None
    id_coeff, tex_coeff = clip_identity(
        raw_arr[ok], lay, None if conf_arr is None else conf_arr[ok]
    )
    coeffs = raw_arr.copy()
    sl = lay.slices()
    coeffs[ok, sl["id_coeff"]] = id_coeff
    coeffs[ok, sl["tex_coeff"]] = tex_coeff
    lm3d_arr = np.stack(lm3d)
    if np.isfinite(lm3d_arr[ok]).all() and method.name == "pgn":
        from facerecon.methods.network import with_identity

        dt = model.mean_shape.dtype
        solved = with_identity(
            model,
            torch.from_numpy(coeffs[ok]).to(model.mean_shape.device, dt),
            torch.from_numpy(lm3d_arr[ok]).to(model.mean_shape.device, dt),
            torch.from_numpy(id_coeff).to(model.mean_shape.device, dt),
        )
        coeffs[ok] = solved.detach().cpu().double().numpy()
    fps_kept = _kept_rate(info.fps, options.fps)
    crops = np.stack(crops_tf)
    coeffs = smooth_coeffs(coeffs, lay, options.smoothing, fps_kept, options.sigma, crops, size)
    timing["identity+smoothing"] = time.perf_counter() - t0
    timing["total"] = time.perf_counter() - t_start
    return ClipResult(
        name=path.stem,
        source=path,
        method=method.name,
        fps=fps_kept,
        frame_index=np.asarray(index),
        time=np.asarray(times),
        status=status,
        coeffs=coeffs,
        coeffs_raw=raw_arr,
        lm68=np.stack(lms),
        crop_to_original=crops,
        id_coeff=id_coeff,
        tex_coeff=tex_coeff,
        size=size,
        seconds=timing,
    )


def _landmarker(name: str) -> str | None:
    """The detector name a fit calibrates a frame's landmarks by (tracked frames come from
    MediaPipe's mesh)."""
    if not name:
        return None
    return "mediapipe" if name.startswith("mediapipe") else name


def _fits(method) -> bool:
    from facerecon.methods.fit import FitMethod
    from facerecon.methods.network import AutoMethod

    return isinstance(method, (FitMethod, AutoMethod))


@dataclass
class FollowResult:
    """One frame of :class:`SelfTracker`: status, landmarks ``(68, 2)`` photo pixels (NaN when
    lost), the crop transform ``(2, 3)`` and the estimate (``coeffs``, ``lm3d``, ``conf``)."""

    status: str
    lm68: np.ndarray
    crop_to_original: np.ndarray
    coeffs: np.ndarray | None = None
    lm3d: np.ndarray | None = None
    conf: np.ndarray | None = None


class SelfTracker:
    """A network method that follows the face with its own landmarks (as 3DDFA-V2 does).

    Frame ``t`` is aligned on the model landmarks that frame ``t - 1``'s estimate projects and
    estimated (with ``options.passes`` > 1, re-aligned on its own projected landmarks and
    estimated again): the crops are aligned exactly as the training crops were (on the
    model's landmark vertices), also at yaws where 2D landmarkers fail. The detector
    (:class:`facerecon.detect.track.FaceTracker`, reset first) starts the track, restarts it
    when the landmarks become implausible (size or position jump, outside the frame) and checks
    it every ``tracker.config.redetect_every`` frames: a detection whose inner landmarks lie
    more than a quarter of the face size away replaces the track.

    Measured on a synthetic clip turning +-60 degrees: MediaPipe Face Mesh tracking (or its
    video mode) lost the inner landmarks at 55-60 degrees (errors up to one inter-ocular
    distance, PGN rotation errors to 44 degrees); following with PGN's own landmarks kept them
    within 0.21 and the rotation error within 10 degrees.
    """

    def __init__(self, tracker, method, model, options: ClipOptions) -> None:
        self.tracker, self.method, self.model = tracker, method, model
        self.passes = max(1, int(options.passes))
        self.prev: np.ndarray | None = None
        self.since = 0
        self.detect_seconds = 0.0

    def _detect(self, image: np.ndarray) -> np.ndarray | None:
        t0 = time.perf_counter()
        self.tracker.reset()
        res = self.tracker.update(image)
        self.detect_seconds += time.perf_counter() - t0
        return res.lm68

    def _check(self, image: np.ndarray) -> np.ndarray | None:
        """The periodic check: MediaPipe's detector alone (~20 ms; the full chain costs up to
        ~300 ms on a 640 px frame); its largest face's 68 landmarks or None."""
        t0 = time.perf_counter()
        faces = self.tracker.mesher.detect(image)
        self.detect_seconds += time.perf_counter() - t0
        return np.asarray(faces[0].lm68, np.float64) if faces else None

    def _estimate(self, image: np.ndarray, lm: np.ndarray):
        from facerecon.detect import align
        from facerecon.fit.core import project_points
        from facerecon.methods import crops_target
        from facerecon.render import CameraConfig

        model = self.model
        for _ in range(self.passes):
            al = align(image, lm)
            est, conf = _estimate(self.method, crops_target([al], model.mean_shape), False)
            parts = model.layout.split(est.coeffs.to(model.mean_shape))
            with torch.no_grad():  # the model's 68 landmark vertices, as the training crops
                v = model.shape_at(parts["id_coeff"], parts["exp_coeff"])
                uv = project_points(v, parts["angles"], parts["trans"], CameraConfig())
            lm = al.transform.to_original(uv[0].detach().cpu().double().numpy())
        return al, est, conf, lm

    def update(self, image: np.ndarray) -> FollowResult:
        self.detect_seconds = 0.0
        cfg = self.tracker.config
        status = "tracked"
        start = self.prev
        if start is None:
            start, status = self._detect(image), "detected"
            if start is None:
                return self._lost()
        al, est, conf, lm = self._estimate(image, start)
        if self.prev is not None and not self.tracker.plausible(lm, self.prev, image.shape):
            start = self._detect(image)  # the track jumped: start again from a detection
            if start is None:
                return self._lost()
            status = "detected"
            al, est, conf, lm = self._estimate(image, start)
        self.since += 1
        if status == "tracked" and cfg.redetect_every and self.since >= cfg.redetect_every:
            found = self._check(image)
            self.since = 0
            if found is not None:
                size = float((lm.max(0) - lm.min(0)).max())
                if np.linalg.norm(found[17:] - lm[17:], axis=1).mean() > 0.25 * size:
                    status = "detected"
                    al, est, conf, lm = self._estimate(image, found)
        if status == "detected":
            self.since = 0
        self.prev = lm
        return FollowResult(
            status,
            lm,
            np.asarray(al.transform.matrix_to_original),
            est.coeffs[0].detach().cpu().double().numpy(),
            None if est.lm3d is None else est.lm3d[0].detach().cpu().double().numpy(),
            None if conf is None else conf[0],
        )

    def _lost(self) -> FollowResult:
        self.prev = None
        return FollowResult("lost", np.full((68, 2), np.nan), np.full((2, 3), np.nan))


def _kept_rate(file_fps: float, want: float | None) -> float:
    """The rate of the frames :func:`facerecon.io.video.read_frames` keeps: every frame, or
    ``want`` per second on average (it picks the frame nearest each ``1 / want`` tick)."""
    return float(file_fps) if want is None else float(min(file_fps, want))


def video_method(method, temporal: float):
    """``method`` set up for batches of consecutive frames: a ``fit``'s (or ``auto``'s
    refinement's) config gets :meth:`facerecon.fit.FitConfig.video`; nets are unchanged."""
    from facerecon.methods.fit import FitMethod
    from facerecon.methods.network import AutoMethod

    fit = method.refiner if isinstance(method, AutoMethod) else method
    if isinstance(fit, FitMethod):
        fit.config = fit.config.video(temporal)
    return method


def _estimate(method, target, joint: bool = True):
    """``(Estimate, per-frame C-Net confidences (B, n_id) or None)`` of one batch."""
    from facerecon.methods.network import AutoMethod, RNetMethod

    if isinstance(method, RNetMethod) and method.cnet is not None:
        from facerecon.methods.base import Estimate
        from facerecon.nets.cnet import predict_set

        t0 = time.perf_counter()
        coeffs, conf = predict_set(method.rnet, method.cnet, target.image)
        conf = conf.detach().cpu().double().numpy()
        if conf.shape[-1] == 1:
            conf = np.repeat(conf, method.model.layout.n_id, axis=-1)
        return Estimate(coeffs.to(target.image.dtype), None, [], time.perf_counter() - t0), conf
    from facerecon.methods.fit import FitMethod

    fits = isinstance(method, (FitMethod, AutoMethod))
    return method(target, joint and fits and len(target.image) > 1), None


def clip_identity(
    coeffs: np.ndarray, layout, confidences: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The clip's ``id_coeff (n_id,)`` and ``tex_coeff (n_tex,)`` from per-frame coefficients
    ``(F, layout.size)``: element-wise confidence-weighted mean of the identities when
    ``confidences (F, n_id)`` are given (C-Net, S4), else the plain mean; albedo: the mean."""
    from facerecon.aggregate import average, s4_elementwise

    sl = layout.slices()
    ids = torch.from_numpy(np.asarray(coeffs[:, sl["id_coeff"]], np.float64))
    if confidences is not None:
        w = torch.from_numpy(np.clip(np.asarray(confidences, np.float64), 1e-8, None))
        id_coeff = s4_elementwise(ids, w)
    else:
        id_coeff = average(ids)
    return id_coeff.numpy(), coeffs[:, sl["tex_coeff"]].mean(0)


def photo_camera(crop_to_original: np.ndarray, size: tuple[int, int]) -> tuple[float, tuple]:
    """The clip's one camera of the photo: ``(focal, (u, v) principal point)`` in photo pixels.
    Focal: the median over the frames of the crop camera's focal in photo pixels (so the head's
    depth there stays near the project camera's distance); principal point: the frame centre.
    ``crop_to_original (F, 2, 3)`` (NaN rows: no face), ``size`` = (width, height)."""
    from facerecon.geometry import crop_focal_in_photo
    from facerecon.render import CameraConfig

    f = crop_focal_in_photo(crop_to_original, CameraConfig().focal)
    f = f[np.isfinite(f)]
    return (float(np.median(f)) if len(f) else CameraConfig().focal), (size[0] / 2, size[1] / 2)


def trans_in_photo(
    trans: np.ndarray, crop_to_original: np.ndarray, size: tuple[int, int], inverse: bool = False
) -> np.ndarray:
    """``trans (F, 3)`` of each frame's crop camera in the clip's :func:`photo_camera`
    (:func:`facerecon.geometry.trans_crop_to_photo`), or back with ``inverse``; NaN rows stay
    NaN."""
    from facerecon.geometry import trans_crop_to_photo
    from facerecon.render import CameraConfig

    cam = CameraConfig()
    focal, center = photo_camera(crop_to_original, size)
    return trans_crop_to_photo(
        trans, crop_to_original, cam.focal, cam.center, focal, center, cam.cam_dist, inverse
    )


def smooth_coeffs(
    coeffs: np.ndarray,
    layout,
    method: str,
    fps: float,
    sigma: float | None = None,
    crop_to_original: np.ndarray | None = None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """``coeffs (F, layout.size)`` with expression, angles, translation and lighting smoothed
    in time (:func:`facerecon.temporal.smooth_track`); identity and albedo untouched.

    With the frames' crop transforms ``crop_to_original (F, 2, 3)`` and the frame ``size``
    (width, height), the translation is smoothed in the clip's one camera of the photo
    (:func:`trans_in_photo`) and mapped back to each frame's crop: every frame's crop follows
    the face (aligned on the previous frame's estimate), so the crop-relative translation
    carries the crops' own jitter, which smoothing it there cannot remove. On the synthetic
    clips this cut PGN's position jitter from 1.72 to 1.22 mm (per-frame R-Net 2.29 mm) at the
    same rotation figures (BENCHMARKS.md "Accuracy: video")."""
    from facerecon.temporal import smooth_track

    out = coeffs.copy()
    sl = layout.slices()
    for part in ("exp_coeff", "angles", "trans", "gamma"):
        x = coeffs[:, sl[part]]
        photo = part == "trans" and crop_to_original is not None and size is not None
        if photo:
            x = trans_in_photo(x, crop_to_original, size)
        y = smooth_track(x, method, fps, sigma)
        out[:, sl[part]] = trans_in_photo(y, crop_to_original, size, True) if photo else y
    return out


# ---------------------------------------------------------------------------- outputs
def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """``(F, 4)`` unit quaternions ``(x, y, z, w)`` of rotations ``R (F, 3, 3)`` acting on
    column vectors (glTF's node rotation)."""
    R = np.asarray(R, np.float64)
    q = np.empty((len(R), 4))
    for i, m in enumerate(R):
        t = np.trace(m)
        if t > 0:
            s = 2.0 * np.sqrt(t + 1.0)
            q[i] = [
                (m[2, 1] - m[1, 2]) / s,
                (m[0, 2] - m[2, 0]) / s,
                (m[1, 0] - m[0, 1]) / s,
                s / 4,
            ]
        else:
            k = int(np.argmax(np.diag(m)))
            a, b = (k + 1) % 3, (k + 2) % 3
            s = 2.0 * np.sqrt(max(1e-12, 1.0 + m[k, k] - m[a, a] - m[b, b]))
            v = np.empty(4)
            v[k] = s / 4
            v[a] = (m[a, k] + m[k, a]) / s
            v[b] = (m[b, k] + m[k, b]) / s
            v[3] = (m[b, a] - m[a, b]) / s
            q[i] = v
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q


def expression_targets(
    exp_basis: np.ndarray, exp_coeff: np.ndarray, max_targets: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Morph targets and weights that replay per-frame expressions exactly (or by their top
    principal directions when the model has more than ``max_targets`` expression components).

    Args:
        exp_basis: ``(N, 3, K)`` mm per unit coefficient.
        exp_coeff: ``(F, K)`` per-frame expression (finite rows).
        max_targets: most targets written.

    Returns:
        ``targets (T, N, 3)`` mm and ``weights (F, T)`` in [-1, 1], with
        ``sum_t weights[f, t] * targets[t] == exp_basis @ exp_coeff[f]`` (up to the dropped
        principal directions).
    """
    k = exp_basis.shape[-1]
    if k <= max_targets:
        dirs = np.eye(k)
    else:
        _, _, vt = np.linalg.svd(exp_coeff, full_matrices=False)
        dirs = vt[:max_targets].T  # (K, T)
    proj = exp_coeff @ dirs  # (F, T)
    scale = np.maximum(np.abs(proj).max(0), 1e-6)
    targets = np.einsum("nck,kt->tnc", exp_basis, dirs * scale[None])
    return targets, proj / scale[None]


def _filled(x: np.ndarray) -> np.ndarray:
    """Rows with NaN filled from the nearest finite row (held values for the animation)."""
    out = np.array(x, np.float64, copy=True)
    ok = np.isfinite(out.reshape(len(out), -1)).all(1)
    if not ok.any():
        return np.zeros_like(out)
    idx = np.where(ok)[0]
    for i in np.where(~ok)[0]:
        out[i] = out[idx[np.argmin(np.abs(idx - i))]]
    return out


def write_clip(result: ClipResult, options: ClipOptions, model, paths: dict[str, Path]) -> None:
    """Write the clip's files (module docstring, step 6)."""
    from facerecon.geometry import euler_matrix
    from facerecon.io import MeshAnimation, cylindrical_uv, save_coefficients, write_glb, write_obj
    from facerecon.temporal import smoothing_width

    lay = model.layout
    sl = lay.slices()
    ow = options.overwrite
    ids = torch.from_numpy(result.id_coeff)[None].to(model.mean_shape)
    tex = torch.from_numpy(result.tex_coeff)[None].to(model.mean_shape)
    with torch.no_grad():
        neutral = model.shape(ids, torch.zeros(1, lay.n_exp).to(ids))[0].cpu().numpy()
        albedo = model.texture(tex)[0].clamp(0, 1).cpu().numpy()
    tri = model.triangles.cpu().numpy()
    uv = cylindrical_uv(model.mean_shape.cpu().numpy())
    write_obj(paths["neutral"], neutral, tri, colors=albedo, uv=uv, overwrite=ow)

    coeffs = _filled(result.coeffs)
    # the head's path in one camera of the photo: crop-relative translations follow the crops
    trans_photo = trans_in_photo(
        result.coeffs[:, sl["trans"]], result.crop_to_original, result.size
    )
    exp = coeffs[:, sl["exp_coeff"]]
    targets, weights = expression_targets(model.exp_basis.cpu().numpy(), exp)
    R = np.stack([euler_matrix(a) for a in coeffs[:, sl["angles"]]])
    trans_mm = _filled(trans_photo) * 100.0
    times = np.arange(len(coeffs)) / max(result.fps, 1e-6)
    anim = MeshAnimation(
        times=times,
        targets=targets,
        weights=weights,
        rotations=matrix_to_quaternion(R),
        translations=trans_mm - trans_mm.mean(0),
    )
    write_glb(paths["glb"], neutral, tri, colors=albedo, overwrite=ow, animation=anim)

    arrays = {
        "frame_index": result.frame_index,
        "time": result.time,
        "status": np.asarray(result.status),
        "coeffs": result.coeffs,
        "coeffs_raw": result.coeffs_raw,
        "id_coeff": result.id_coeff,
        "tex_coeff": result.tex_coeff,
        "landmarks68": result.lm68,
        "crop_to_original": result.crop_to_original,
        "neutral_vertices": neutral.astype(np.float32),
        "trans_photo": trans_photo,
    }
    for part in ("exp_coeff", "angles", "gamma", "trans"):
        arrays[part] = result.coeffs[:, sl[part]]
    meta = {
        "model": model.name,
        "layout": list(lay.sizes),
        "method": result.method,
        "source": str(result.source),
        "fps": result.fps,
        "smoothing": options.smoothing,
        "sigma": smoothing_width(options.smoothing, options.sigma),
        "units": "per-frame rows (NaN: no face); vertices mm; trans scene units (100 mm)",
        "trans_photo": "trans in one camera of the photo (focal photo_focal, principal point "
        "the frame centre, photo pixels); trans is each frame's crop camera's",
        "photo_focal": photo_camera(result.crop_to_original, result.size)[0],
    }
    save_coefficients(paths["npz"], arrays, meta, overwrite=ow)


def write_overlay(result: ClipResult, options: ClipOptions, model, paths: dict[str, Path]) -> float:
    """Decode the clip again and write the fitted face over every kept frame (MP4) and the
    middle frame as ``NAME_overlay.png``; returns the seconds spent."""
    from facerecon.io import draw_landmarks, overlay_image, save_png, warp_to_original
    from facerecon.io.paths import ensure_writable
    from facerecon.io.video import VideoWriter, read_frames
    from facerecon.render import CameraConfig, render

    t0 = time.perf_counter()
    lay = model.layout
    dev, dt = model.mean_shape.device, model.mean_shape.dtype
    mid = int(np.argmax(result.ok * (1.0 - np.abs(np.linspace(-1, 1, len(result.ok))))))
    writer = None
    if "overlay" in paths:
        ensure_writable(paths["overlay"], options.overwrite)
        writer = VideoWriter(paths["overlay"], result.fps, result.size)
    ensure_writable(paths["preview"], options.overwrite)
    frames = read_frames(result.source, options.fps, len(result.status))
    try:
        for row, frame in enumerate(frames):
            img = frame.image
            c = result.coeffs[row]
            if np.isfinite(c).all():
                parts = lay.split(torch.from_numpy(c)[None].to(dev, dt))
                with torch.no_grad():
                    v, a = model(parts["id_coeff"], parts["exp_coeff"], parts["tex_coeff"])
                    out = render(
                        v,
                        a,
                        model.triangles,
                        parts["angles"],
                        parts["trans"],
                        parts["gamma"],
                        CameraConfig(),
                        backend=options.rasterizer,
                    )
                h, w = img.shape[:2]
                m = result.crop_to_original[row]
                rimg = warp_to_original(
                    out.image[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy(), m, (h, w)
                )
                mask = warp_to_original(out.mask[0, 0].float().cpu().numpy(), m, (h, w))
                img = overlay_image(img, rimg, mask)
                img = draw_landmarks(img, result.lm68[row], color=(0, 255, 0))
            if writer is not None:
                writer.write(img)
            if row == mid:
                save_png(paths["preview"], img, overwrite=options.overwrite)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
    return time.perf_counter() - t0


def clip_detector(name: str):
    """The full-frame detector of a clip: ``--detector NAME``; ``auto`` is the photo chain
    without MediaPipe's second opinion (tracking needs one set of landmarks per frame)."""
    from facerecon.detect import detector_for
    from facerecon.detect.faces import FallbackDetector

    return FallbackDetector(second_opinion=None) if name == "auto" else detector_for(name)


def jitter(x: np.ndarray) -> float:
    """Mean absolute frame-to-frame change of a ``(F, D)`` track (finite consecutive rows)."""
    d = np.diff(np.asarray(x, np.float64), axis=0)
    d = d[np.isfinite(d).all(1)]
    return float(np.abs(d).mean()) if len(d) else float("nan")


def run_clip(
    path: str | Path,
    options: ClipOptions,
    show_progress: bool = False,
    name: str | None = None,
) -> dict[str, Any]:
    """Reconstruct a video file (module docstring); returns its ``NAME_clip.json`` record.

    Raises:
        FaceReconError: one line, for an unreadable video, no face in any frame, existing
            outputs (without ``overwrite``) or missing weights.
    """
    from tqdm import tqdm

    from facerecon.detect.track import FaceTracker
    from facerecon.io.paths import check_outputs_free, prepare_out_dir
    from facerecon.methods import MethodSpec, build_method
    from facerecon.morphable import load_face_model

    path = Path(path)
    options = resolve_clip_options(options)
    name = name or path.stem
    paths = clip_outputs(options.out_dir, name, options.overlay)
    check_outputs_free([p for p in paths.values() if p.exists()], options.overwrite)
    from facerecon.io.video import probe_video

    info = probe_video(path)
    prepare_out_dir(options.out_dir)
    t0 = time.perf_counter()
    model = load_face_model(options.model, device=torch.device(options.device))
    spec = MethodSpec(
        weights=options.weights,
        pgn_weights=options.pgn_weights,
        cnet=options.cnet,
        fast=options.fast,
        perceptual=options.perceptual,
        rasterizer=options.rasterizer,
        device=options.device,
    )
    method = build_method(options.method, spec, model)
    if options.joint:
        method = video_method(method, options.temporal)
    tracker = FaceTracker(clip_detector(options.detector))
    load_s = time.perf_counter() - t0
    total = info.frames
    if options.fps is not None and options.fps < info.fps and total:
        total = int(np.ceil(total * options.fps / info.fps))
    if options.max_frames is not None:
        total = min(total, options.max_frames) if total else options.max_frames
    bar = tqdm(
        total=total or None,
        disable=not show_progress,
        unit="frame",
        desc=name,
        file=sys.stderr,
        mininterval=0.5,
    )
    try:
        result = estimate_clip(
            path, options, method, model, tracker, on_frame=lambda i, s: bar.update(1)
        )
    finally:
        bar.close()
        tracker.close()
    result.name = name
    t1 = time.perf_counter()
    write_clip(result, options, model, paths)
    result.seconds["write"] = time.perf_counter() - t1
    result.seconds["overlay"] = write_overlay(result, options, model, paths)
    result.seconds["load"] = load_s
    n = len(result.status)
    sl = model.layout.slices()
    record = {
        "name": name,
        "source": str(path),
        "kind": "video",
        "method": result.method,
        "model": model.name,
        "frames": n,
        "frames_with_face": int(result.ok.sum()),
        "fps": result.fps,
        "smoothing": options.smoothing,
        "frames_per_second": n / max(result.seconds["total"], 1e-9),
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        "jitter": {
            "raw_angles_deg": np.rad2deg(jitter(result.coeffs_raw[:, sl["angles"]])),
            "angles_deg": np.rad2deg(jitter(result.coeffs[:, sl["angles"]])),
        },
        "paths": {k: str(v) for k, v in paths.items()},
        "per_frame": [
            {"frame": int(i), "time": round(float(t), 4), "status": s}
            for i, t, s in zip(result.frame_index, result.time, result.status, strict=True)
        ],
    }
    from facerecon.io.paths import ensure_writable

    ensure_writable(paths["json"], options.overwrite).write_text(json.dumps(record, indent=1))
    return record

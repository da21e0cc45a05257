"""Which surface point of the model each 68-point landmark is, per detector, and how noisy.

A face model defines its 68 landmarks as vertices (``model.landmarks68``); a detector has its
own idea of where "the outer end of the brow" is, off those vertices by a few millimetres,
and some of its points are far noisier than others (the jaw more than the eye corners). A fit
that takes the vertices and equal weights bends the shape to the difference. A
:class:`LandmarkSpec` says, per landmark:

- ``table (68, K)``: the candidate vertices of the jaw contour (:mod:`facerecon.fit.contour`:
  the jaw points 0..16 follow the silhouette; other rows repeat their vertex);
- ``index (68, 3)`` / ``weight (68, 3)``: the landmark as a point on the surface, barycentric in
  a triangle (the inner points 17..67 of a calibrated detector; None: the model's vertices);
- ``sigma (68,)``: the detector's noise in 224-crop pixels on faces within 30 degrees of
  frontal, and ``sigma_by_yaw (Y, 68)`` the same per signed-yaw bin (the far side's points of a
  turned face are the noisiest: detectors put them on the visible outline); None:
  uncalibrated.

Calibrations are measured by ``scripts/calibrate_landmarks.py`` on renders of the model with
known geometry and photo textures, and stored as ``facerecon/fit/landmarks/MODEL_DETECTOR.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from facerecon.fit.contour import JAW, contour_candidates, select_contour
from facerecon.render import CameraConfig, project, transform

__all__ = [
    "CALIBRATION_DIR",
    "LandmarkPoints",
    "LandmarkSpec",
    "agreement_weights",
    "calibration_key",
    "calibration_path",
    "landmark_spec",
    "project_landmarks",
    "spec_candidates",
    "spec_landmarks",
]

CALIBRATION_DIR = Path(__file__).with_name("landmarks")


@dataclass
class LandmarkSpec:
    """The 68 landmarks of a model for one detector (module docstring)."""

    table: torch.Tensor
    index: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    sigma: torch.Tensor | None = None
    detector: str | None = None
    sigma_yaw: torch.Tensor | None = None  # (Y,) yaw bin centres, degrees
    sigma_by_yaw: torch.Tensor | None = None  # (Y, 68) noise per yaw bin, 224-crop pixels

    def sigma_at(self, yaw_deg: torch.Tensor, growth: float = 0.0) -> torch.Tensor | None:
        """``(B, 68)`` noise for the faces' yaws ``(B,)`` in degrees (linear between the
        calibration's yaw bins, the end bins beyond them, times ``1 + growth * d / 10`` at
        ``d`` degrees past the end bins' centres), or the yaw-free ``(68,)`` sigma when the
        calibration has no bins (None: uncalibrated)."""
        if self.sigma_by_yaw is None or self.sigma_yaw is None:
            return self.sigma
        c = self.sigma_yaw.to(yaw_deg)
        t = yaw_deg.clamp(float(c[0]), float(c[-1]))
        hi = torch.searchsorted(c, t.contiguous()).clamp(1, len(c) - 1)
        lo = hi - 1
        w = ((t - c[lo]) / (c[hi] - c[lo])).unsqueeze(-1)
        table = self.sigma_by_yaw.to(yaw_deg)
        sigma = (1 - w) * table[lo] + w * table[hi]
        if growth > 0:
            past = (yaw_deg - t).abs()  # degrees beyond the end bins' centres
            sigma = sigma * (1 + growth * past / 10.0).unsqueeze(-1)
        return sigma


def calibration_key(detector: str | None) -> str | None:
    """The calibration a detector's landmarks use: ``"dlib hog"``, ``"dlib mmod"``,
    ``"dlib hog x2"`` -> ``"dlib"`` (one shape predictor), ``"mediapipe"`` -> ``"mediapipe"``."""
    if not detector:
        return None
    return detector.split()[0]


def calibration_path(model_name: str, detector: str) -> Path:
    """``facerecon/fit/landmarks/MODEL_DETECTOR.json``."""
    return CALIBRATION_DIR / f"{model_name}_{detector}.json"


@lru_cache(maxsize=16)
def _read_calibration(path: str) -> dict:
    return json.loads(Path(path).read_text())


def landmark_spec(
    model,
    detector: str | None = None,
    contour: bool = True,
    calibrated: dict | None = None,
) -> LandmarkSpec:
    """The :class:`LandmarkSpec` of ``model`` for ``detector``.

    Args:
        model: the face model.
        detector: ``"dlib"``, ``"mediapipe"``, ... : its calibration file is used when it
            exists for the model (:func:`calibration_path`); None or no file: the model's own
            landmark vertices, no noise model.
        contour: jaw points follow the silhouette.
        calibrated: ``{"index", "weight"[, "sigma_px"]}`` arrays to use instead of a file.
    """
    lm = model.landmarks68
    table = contour_candidates(model.mean_shape, lm) if contour else lm[:, None]
    index = weight = sigma = None
    data = calibrated
    if data is None and detector is not None:
        path = calibration_path(model.name, detector)
        data = _read_calibration(str(path)) if path.is_file() else None
    if data is not None:
        dtype = model.mean_shape.dtype
        index = torch.as_tensor(data["index"], dtype=torch.int64, device=lm.device)
        weight = torch.as_tensor(data["weight"], dtype=dtype, device=lm.device)
        if "sigma_px" in data:
            sigma = torch.as_tensor(data["sigma_px"], dtype=dtype, device=lm.device)
        if "sigma_px_by_yaw" in data:
            by_yaw = torch.as_tensor(data["sigma_px_by_yaw"], dtype=dtype, device=lm.device)
            yaw = torch.as_tensor(data["sigma_yaw_deg"], dtype=dtype, device=lm.device)
            return LandmarkSpec(table, index, weight, sigma, detector, yaw, by_yaw)
    return LandmarkSpec(table, index, weight, sigma, detector if data is not None else None)


def spec_candidates(
    spec: LandmarkSpec, points_at: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Landmark candidates ``(B, 68, K, 3)`` mm from ``points_at(indices) -> (B, *indices.shape,
    3)`` (e.g. ``lambda i: vertices[:, i]``): the jaw rows' contour candidates, the other rows
    their surface point repeated. Only the jaw rows' candidates are evaluated (17 of 68 rows:
    the landmark stage of a fit asks for them every step)."""
    jaw_rows, inner_rows, weight = _spec_rows(spec)
    jaw = points_at(jaw_rows)  # (B, J, K, 3)
    inner = _inner_points(points_at(inner_rows), weight)  # (B, 68 - J, 3)
    return torch.cat([jaw, inner[:, :, None].expand(-1, -1, jaw.shape[2], -1)], dim=1)


def _spec_rows(spec: LandmarkSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The vertices a spec's landmarks are made of: ``(jaw (J, K) contour candidates, inner
    (68 - J, m) vertices, their weights (68 - J, m) or None)``; uncalibrated inner rows are
    their own vertex (``m = 1``, no weights), calibrated ones a barycentric point."""
    J = len(JAW)  # JAW: rows 0..16
    if spec.index is None:
        return spec.table[:J], spec.table[J:, :1], None
    return spec.table[:J], spec.index[J:], spec.weight[J:]


def _inner_points(points: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """``points (B, 68 - J, m, 3)`` of :func:`_spec_rows`' inner vertices as one point per
    row ``(B, 68 - J, 3)``: the weighted sum, or the vertex itself without weights."""
    if weight is None:
        return points[:, :, 0]
    return (points * weight.to(points)[None, ..., None]).sum(-2)


def _silhouette(jaw_uv: torch.Tensor) -> torch.Tensor:
    """The jaw landmarks ``(B, J, 2)`` from their projected contour candidates ``jaw_uv (B, J,
    K, 2)`` (column 0 the fixed vertex): the candidate on the silhouette
    (:func:`facerecon.fit.contour.select_contour`)."""
    B, J = jaw_uv.shape[:2]
    choice = select_contour(jaw_uv, torch.ones(J, dtype=torch.bool, device=jaw_uv.device))
    return torch.gather(jaw_uv, 2, choice[:, :, None, None].expand(B, J, 1, 2))[:, :, 0]


def spec_landmarks(
    spec: LandmarkSpec,
    vertices: torch.Tensor,
    angles: torch.Tensor,
    trans: torch.Tensor,
    camera: CameraConfig,
) -> torch.Tensor:
    """Projected landmarks ``(B, 68, 2)`` of ``vertices (B, N, 3)`` mm under the spec."""
    return project_landmarks(spec_candidates(spec, lambda i: vertices[:, i]), angles, trans, camera)


def project_landmarks(
    candidates_mm: torch.Tensor, angles: torch.Tensor, trans: torch.Tensor, camera: CameraConfig
) -> torch.Tensor:
    """Project landmark candidates ``(B, 68, K, 3)`` mm and keep, for each jaw landmark, the one
    on the silhouette (see :mod:`facerecon.fit.contour`): ``(B, 68, 2)`` pixels. Other rows are
    their column 0 (their fixed point), so only that column and the jaw rows' candidates are
    projected."""
    B, L, K, _ = candidates_mm.shape
    if K == 1:
        uv, _ = project(transform(candidates_mm[:, :, 0], angles, trans, camera), camera)
        return uv
    J = len(JAW)  # rows 0..16
    points = torch.cat(
        [candidates_mm[:, :, 0], candidates_mm[:, :J, 1:].reshape(B, J * (K - 1), 3)], dim=1
    )
    uv, _ = project(transform(points, angles, trans, camera), camera)
    fixed = uv[:, :L]  # (B, 68, 2)
    jaw = torch.cat([fixed[:, :J, None], uv[:, L:].reshape(B, J, K - 1, 2)], dim=2)
    return torch.cat([_silhouette(jaw), fixed[:, J:]], dim=1)


class LandmarkPoints:
    """The 68 landmarks of several specs (e.g. two detectors' of one batch) straight from the
    shape coefficients, for a fit's landmark stage, which asks for them every step.

    The model's rows (mean, identity and expression bases) at every vertex the specs read
    (their jaw candidates, their inner points' triangle corners) are gathered once; a step is
    then one shape evaluation and one projection for all specs together. The landmarks are
    those of :func:`project_landmarks` of :func:`spec_candidates` on ``model.shape_at``, spec
    by spec (equal up to float rounding) at about half the cost: ``auto``'s landmark stage
    (120 steps, dlib and MediaPipe points, a batch of 8 1080p photos, one thread) went from
    1.58 to 0.73 s (cProfile, 2026-12-07).

    Args:
        model: the face model (``mean_shape (N, 3)``, ``id_basis`` / ``exp_basis (N, 3, K)``).
        specs: the :class:`LandmarkSpec` of each observation.
    """

    def __init__(self, model, specs: list[LandmarkSpec] | tuple[LandmarkSpec, ...]):
        self.specs = tuple(specs)
        rows = [_spec_rows(spec) for spec in self.specs]
        self._layout = [(tuple(jaw.shape), tuple(inner.shape), w) for jaw, inner, w in rows]
        index = torch.cat([r.reshape(-1) for jaw, inner, _ in rows for r in (jaw, inner)])
        index = index.to(model.mean_shape.device)
        self.mean = model.mean_shape.index_select(0, index)  # (M, 3)
        self.id_basis = model.id_basis.index_select(0, index)  # (M, 3, Kid)
        self.exp_basis = model.exp_basis.index_select(0, index)  # (M, 3, Kexp)

    def __call__(
        self,
        id_coeff: torch.Tensor,
        exp_coeff: torch.Tensor,
        angles: torch.Tensor,
        trans: torch.Tensor,
        camera: CameraConfig,
    ) -> list[torch.Tensor]:
        """Each spec's landmarks ``(B, 68, 2)`` pixels for ``id_coeff (B, Kid)``, ``exp_coeff
        (B, Kexp)`` and the pose ``angles`` / ``trans (B, 3)``."""
        pts = self.mean + torch.einsum("mck,bk->bmc", self.id_basis, id_coeff)
        pts = pts + torch.einsum("mck,bk->bmc", self.exp_basis, exp_coeff)  # (B, M, 3)
        B, at, points = pts.shape[0], 0, []
        for jaw_shape, inner_shape, weight in self._layout:
            nj, ni = jaw_shape[0] * jaw_shape[1], inner_shape[0] * inner_shape[1]
            inner = pts[:, at + nj : at + nj + ni].reshape(B, *inner_shape, 3)
            points += [pts[:, at : at + nj], _inner_points(inner, weight)]
            at += nj + ni
        uv, _ = project(transform(torch.cat(points, dim=1), angles, trans, camera), camera)
        out, at = [], 0
        for (J, K), inner_shape, _ in self._layout:
            jaw = uv[:, at : at + J * K].reshape(B, J, K, 2)
            inner = uv[:, at + J * K : at + J * K + inner_shape[0]]
            at += J * K + inner_shape[0]
            out.append(torch.cat([_silhouette(jaw) if K > 1 else jaw[:, :, 0], inner], dim=1))
        return out


def agreement_weights(
    detected: torch.Tensor, predicted: torch.Tensor, scale: float
) -> torch.Tensor:
    """How far each detected landmark agrees with where an estimate puts it, as a weight.

    ``w = 1 / (1 + (d / (scale * iod))^2)``: ``d`` the distance of a detected point from the
    predicted one, ``iod`` the predicted eye-centre distance (points 36-41 and 42-47, so it is
    defined whatever the detector did). A point the estimate already explains keeps its
    weight, one ``scale`` eye distances off keeps half, a point far off (a mouth a detector
    invented under a hand) little. Non-finite detections (a detector that found nothing)
    weigh 0.

    Args:
        detected: ``(B, 68, 2)`` pixels (NaN rows allowed).
        predicted: ``(B, 68, 2)`` the estimate's landmarks, same pixels.
        scale: ``> 0``, the distance at which the weight is 1/2, in eye distances.

    Returns:
        ``(B, 68)`` weights in 0..1, no gradient.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    with torch.no_grad():
        iod = (predicted[:, 36:42].mean(1) - predicted[:, 42:48].mean(1)).norm(dim=-1)
        found = torch.isfinite(detected).all(dim=-1)
        d = (torch.nan_to_num(detected) - predicted).norm(dim=-1)
        ratio = d / (scale * iod.clamp_min(1e-6))[:, None]
        return torch.where(found, 1.0 / (1.0 + ratio**2), torch.zeros_like(ratio))

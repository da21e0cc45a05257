"""Procedural albedo model for face meshes that ship without a texture model.

Given vertex positions (mm) and region labels, build ``tex_mean (N, 3)`` in 0..1 and
``tex_basis (N, 3, K)`` whose columns are already scaled by their standard deviation, so
``tex_coeff ~ N(0, 1)`` gives plausible skin. All colours are linear RGB reflectance.

Mean: one skin colour ``skin_rgb``; lips, brows and the eye region are blended towards their own
colours through soft (Gaussian-smoothed, ``soft_mm``) region weights.

Components (K = 16 by default), each a fixed colour direction times a spatial weight field:

====  ===========================  ===================================================
  #   name                          field x colour direction (std)
====  ===========================  ===================================================
  0   tone                          1 x skin colour (lighter/darker overall, 0.18 relative)
  1   redness                       1 x (+r, -g/2, -b/2) (0.03)
  2   yellowness                    1 x (+r/2, +g/2, -b) (0.025)
  3   lip redness                   lips x (+r, -g, -b/2) (0.05)
  4   lip darkness                  lips x -lip colour (0.15 relative)
  5   brow darkness                 brows x -brow colour (0.35 relative)
  6   eye-region darkness           eyes x -skin colour (0.15 relative)
  7   cheek redness                 cheek blobs x (+r, -g/2, -b/2) (0.03)
 8-15 low-frequency shading         cos/sin waves over the face (1 to 2 periods across its
                                    width/height) x skin colour (0.03 relative) x grey;
                                    plus two redness waves
====  ===========================  ===================================================

No data was fitted: the numbers are hand-chosen so that +-3 sd stays inside 0..1 for the mean
skin tone. Regions come from :func:`facerecon.morphable.regions.vertex_regions`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facerecon.labels import Region
from facerecon.morphable.mesh import smooth_field


@dataclass(frozen=True)
class AlbedoConfig:
    skin_rgb: tuple[float, float, float] = (0.70, 0.52, 0.44)
    lip_rgb: tuple[float, float, float] = (0.62, 0.36, 0.34)
    brow_rgb: tuple[float, float, float] = (0.30, 0.22, 0.18)
    eye_rgb: tuple[float, float, float] = (0.55, 0.42, 0.38)
    soft_mm: float = 2.0
    tone_std: float = 0.18
    hue_std: float = 0.03
    yellow_std: float = 0.025
    lip_red_std: float = 0.05
    lip_dark_std: float = 0.15
    brow_dark_std: float = 0.35
    eye_dark_std: float = 0.15
    cheek_red_std: float = 0.03
    wave_std: float = 0.03


def _soft(points: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    if not mask.any():
        return np.zeros(len(points))
    return np.clip(smooth_field(points, mask.astype(np.float64), sigma), 0.0, 1.0)


def procedural_albedo(
    vertices: np.ndarray,
    labels: np.ndarray,
    landmarks68: np.ndarray,
    config: AlbedoConfig | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Build the albedo model for a mean mesh.

    Args:
        vertices: ``(N, 3)`` mm mean shape.
        labels: ``(N,)`` :class:`Region` values.
        landmarks68: ``(68,)`` vertex indices (used for the cheek centres and the face extent).

    Returns:
        ``tex_mean (N, 3)``, ``tex_basis (N, 3, K)`` (std-scaled), component names ``[K]``.
    """
    cfg = config or AlbedoConfig()
    v = vertices.astype(np.float64)
    skin, lip, brow, eye = (
        np.asarray(c, dtype=np.float64)
        for c in (cfg.skin_rgb, cfg.lip_rgb, cfg.brow_rgb, cfg.eye_rgb)
    )
    w_lip = _soft(v, np.isin(labels, [Region.UPPER_LIP, Region.LOWER_LIP]), cfg.soft_mm)
    w_brow = _soft(v, np.isin(labels, [Region.LEFT_BROW, Region.RIGHT_BROW]), cfg.soft_mm)
    w_eye = _soft(v, np.isin(labels, [Region.LEFT_EYE, Region.RIGHT_EYE]), 1.5 * cfg.soft_mm)

    mean = np.broadcast_to(skin, v.shape).copy()
    for w, c in ((w_eye, eye), (w_brow, brow), (w_lip, lip)):
        mean = mean * (1.0 - w[:, None]) + w[:, None] * c

    lm = v[landmarks68]
    x0, x1 = lm[0:17, 0].min(), lm[0:17, 0].max()
    y0, y1 = lm[8, 1], lm[17:27, 1].max() + 0.4 * (x1 - x0)
    u = (v[:, 0] - x0) / max(x1 - x0, 1e-9)  # 0..1 across the face
    t = (v[:, 1] - y0) / max(y1 - y0, 1e-9)  # 0..1 chin to forehead

    red = np.array([1.0, -0.5, -0.5])
    yellow = np.array([0.5, 0.5, -1.0])
    ones = np.ones(len(v))
    cheek_c = 0.5 * (lm[[1, 15]] + lm[[31, 35]])
    d2 = ((v[:, None, :2] - cheek_c[None, :, :2]) ** 2).sum(-1)
    sig = 0.12 * (x1 - x0)
    cheeks = np.exp(-0.5 * d2 / sig**2).sum(axis=1)

    comps: list[tuple[str, np.ndarray]] = [
        ("tone", cfg.tone_std * mean),
        ("redness", cfg.hue_std * ones[:, None] * red),
        ("yellowness", cfg.yellow_std * ones[:, None] * yellow),
        ("lip_redness", cfg.lip_red_std * w_lip[:, None] * np.array([1.0, -1.0, -0.5])),
        ("lip_darkness", -cfg.lip_dark_std * w_lip[:, None] * lip),
        ("brow_darkness", -cfg.brow_dark_std * w_brow[:, None] * brow),
        ("eye_darkness", -cfg.eye_dark_std * w_eye[:, None] * skin),
        ("cheek_redness", cfg.cheek_red_std * cheeks[:, None] * red),
    ]
    waves = [
        ("wave_x1", np.cos(np.pi * u)),
        ("wave_y1", np.cos(np.pi * t)),
        ("wave_x2", np.cos(2 * np.pi * u)),
        ("wave_y2", np.cos(2 * np.pi * t)),
        ("wave_xy", np.cos(np.pi * u) * np.cos(np.pi * t)),
        ("wave_r", np.sqrt((u - 0.5) ** 2 + (t - 0.5) ** 2) * 2.0),
    ]
    for name, f in waves:
        comps.append((name, cfg.wave_std * f[:, None] * skin[None, :]))
    comps.append(("red_wave_x", 0.5 * cfg.hue_std * np.cos(np.pi * u)[:, None] * red))
    comps.append(("red_wave_y", 0.5 * cfg.hue_std * np.cos(np.pi * t)[:, None] * red))

    names = [c[0] for c in comps]
    basis = np.stack([c[1] for c in comps], axis=-1)
    return mean, basis, names

"""Temporal smoothing of per-frame coefficient tracks (video: expression and pose).

Pure functions on ``(T, D)`` numpy arrays (one row per frame, NaN rows for frames without a
face, which neither contribute nor stop the filter):

* :func:`gaussian_smooth`: zero-phase (offline) Gaussian of ``sigma`` frames by normalised
  convolution, so gaps and clip ends are handled without bias.
* :func:`one_euro`: the causal One-Euro filter (Casiez et al., CHI 2012): a first-order
  low-pass whose cut-off rises with the speed of the signal (``min_cutoff + beta * |dx/dt|``),
  low jitter when still, little lag when moving; what a live tracker would use.
* :func:`smooth_track` picks one by name (:data:`SMOOTHERS`).

Which is better for this system is measured, not assumed (BENCHMARKS.md, synthetic video).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SMOOTHERS", "gaussian_smooth", "one_euro", "smooth_track"]

SMOOTHERS = ("gaussian", "one-euro", "none")


def gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Zero-phase Gaussian smoothing along axis 0 by normalised convolution.

    Args:
        x: ``(T, D)`` (or ``(T,)``) values; NaN rows are missing frames.
        sigma: standard deviation in frames (0: unchanged).

    Returns:
        Same shape; rows missing in ``x`` stay NaN.
    """
    a = np.asarray(x, np.float64)
    flat = a.reshape(a.shape[0], -1)
    if sigma <= 0 or a.shape[0] < 2:
        return a.copy()
    radius = max(1, math.ceil(3.0 * sigma))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / float(sigma)) ** 2)
    have = np.isfinite(flat).all(1)
    vals = np.where(have[:, None], flat, 0.0)
    num = np.stack([np.convolve(vals[:, j], k, mode="same") for j in range(flat.shape[1])], 1)
    den = np.convolve(have.astype(np.float64), k, mode="same")[:, None]
    out = np.where(have[:, None], num / np.maximum(den, 1e-12), np.nan)
    return out.reshape(a.shape)


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def one_euro(
    x: np.ndarray,
    fps: float,
    min_cutoff: float = 3.0,
    beta: float = 2.0,
    d_cutoff: float = 1.0,
) -> np.ndarray:
    """Causal One-Euro filter along axis 0, per column.

    Args:
        x: ``(T, D)`` (or ``(T,)``); NaN rows are skipped (the filter state carries over, the
            time step grows).
        fps: frame rate (Hz).
        min_cutoff: cut-off frequency at rest (Hz): lower = smoother, more lag.
        beta: speed coefficient (per unit of the signal per second): higher = less lag on
            fast motion. The defaults (3 Hz, 2) were the best of a 3x3 grid on a noisy
            sinusoid at 25 fps (``tests/test_video.py``); they cut its error by a quarter, a
            Gaussian of 1.5 frames by more than half (offline smoothing sees the future).
        d_cutoff: cut-off of the derivative's low-pass (Hz).

    Returns:
        Same shape; missing rows stay NaN.
    """
    a = np.asarray(x, np.float64)
    flat = a.reshape(a.shape[0], -1)
    out = np.full_like(flat, np.nan)
    prev = dprev = None
    gap = 1
    for t in range(flat.shape[0]):
        row = flat[t]
        if not np.isfinite(row).all():
            gap += 1
            continue
        dt = gap / float(fps)
        gap = 1
        if prev is None:
            prev, dprev = row.copy(), np.zeros_like(row)
            out[t] = row
            continue
        dx = (row - prev) / dt
        ad = _alpha(d_cutoff, dt)
        dprev = ad * dx + (1 - ad) * dprev
        cutoff = min_cutoff + beta * np.abs(dprev)
        ax = _alpha(cutoff, dt)
        prev = ax * row + (1 - ax) * prev
        out[t] = prev
    return out.reshape(a.shape)


def smooth_track(
    x: np.ndarray, method: str, fps: float, sigma: float = 1.5, **one_euro_kw: float
) -> np.ndarray:
    """:func:`gaussian_smooth` (``sigma`` frames), :func:`one_euro` or ``"none"`` (a copy)."""
    if method == "gaussian":
        return gaussian_smooth(x, sigma)
    if method == "one-euro":
        return one_euro(x, fps, **one_euro_kw)
    if method == "none":
        return np.array(x, np.float64, copy=True)
    raise ValueError(f"smoothing must be one of {SMOOTHERS}, got {method!r}")

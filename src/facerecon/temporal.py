"""Temporal smoothing of per-frame coefficient tracks (video: expression and pose).

Pure functions on ``(T, D)`` numpy arrays (one row per frame, NaN rows for frames without a
face, which neither contribute nor stop the filter):

* :func:`gaussian_smooth`: zero-phase (offline) Gaussian of ``sigma`` frames by normalised
  convolution, so gaps and clip ends are handled without bias.
* :func:`local_poly_smooth`: zero-phase local polynomial regression (quadratic, Gaussian
  weights of ``sigma`` frames; LOESS / a Savitzky-Golay filter that tolerates gaps): it
  follows motion up to constant acceleration exactly, so it can average over a wider window
  than a Gaussian before it cuts the turns of a head short.
* :func:`one_euro`: the causal One-Euro filter (Casiez et al., CHI 2012): a first-order
  low-pass whose cut-off rises with the speed of the signal (``min_cutoff + beta * |dx/dt|``),
  low jitter when still, little lag when moving; what a live tracker would use.
* :func:`smooth_track` picks one by name (:data:`SMOOTHERS`).

Which is better for this system is measured, not assumed (BENCHMARKS.md, synthetic video).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "SMOOTHERS",
    "gaussian_smooth",
    "local_poly_smooth",
    "one_euro",
    "smooth_track",
    "smoothing_width",
]

SMOOTHERS = ("poly", "gaussian", "one-euro", "none")
#: each smoother's default width in frames (``sigma``; one-euro has none)
DEFAULT_SIGMA = {"poly": 4.0, "gaussian": 1.5}


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
    # "full" then the centred T rows: "same" returns the longer of the two lengths, so a kernel
    # wider than the clip would not give one row per frame
    T = flat.shape[0]

    def conv(v: np.ndarray) -> np.ndarray:
        return np.convolve(v, k, mode="full")[radius : radius + T]

    num = np.stack([conv(vals[:, j]) for j in range(flat.shape[1])], 1)
    den = conv(have.astype(np.float64))[:, None]
    out = np.where(have[:, None], num / np.maximum(den, 1e-12), np.nan)
    return out.reshape(a.shape)


def local_poly_smooth(x: np.ndarray, sigma: float, degree: int = 2) -> np.ndarray:
    """Zero-phase local polynomial smoothing along axis 0: each frame's value is the constant
    term of a polynomial of ``degree`` fitted by least squares to the frames around it, with
    Gaussian weights of ``sigma`` frames (cut at 3 sigma). A polynomial of ``degree`` passes
    through unchanged (a head turning at a steady or changing speed keeps its amplitude, where a
    Gaussian of the same width shrinks its turns); noise is averaged over the window. Missing
    frames take no part; where too few frames surround one for the polynomial (fewer than
    ``degree + 1`` distinct), the degree drops to what they determine.

    Args:
        x: ``(T, D)`` (or ``(T,)``) values; NaN rows are missing frames.
        sigma: width in frames (0: unchanged).
        degree: of the polynomial (default 2; 0 is a Gaussian-weighted mean). On a
            symmetric window an odd degree gives the centre value of the even one below it.

    Returns:
        Same shape; rows missing in ``x`` stay NaN.
    """
    a = np.asarray(x, np.float64)
    flat = a.reshape(a.shape[0], -1)
    T = flat.shape[0]
    if sigma <= 0 or T < 2:
        return a.copy()
    have = np.isfinite(flat).all(1)
    vals = np.where(have[:, None], flat, 0.0)
    radius = max(1, math.ceil(3.0 * sigma))
    n = degree + 1
    moments = np.zeros((T, 2 * n - 1))  # sum of w d^k over the window, k = 0..2 degree
    sums = np.zeros((T, n, flat.shape[1]))  # sum of w d^k x
    for d in range(-radius, radius + 1):
        lo, hi = max(0, -d), min(T, T - d)  # frames t whose t + d exists
        w = math.exp(-0.5 * (d / float(sigma)) ** 2) * have[lo + d : hi + d]
        powers = float(d) ** np.arange(2 * n - 1)
        moments[lo:hi] += w[:, None] * powers
        sums[lo:hi] += (w[:, None] * powers[:n])[:, :, None] * vals[lo + d : hi + d, None, :]
    out = np.full_like(flat, np.nan)
    todo = have.copy()
    for deg in range(degree, -1, -1):  # the highest degree each frame's window determines
        m = deg + 1
        A = np.stack([moments[:, i : i + m] for i in range(m)], 1)  # (T, m, m) Hankel
        cond = np.linalg.cond(A[todo]) if todo.any() else np.zeros(0)
        ok = np.zeros(T, bool)
        ok[np.flatnonzero(todo)[cond < 1e8]] = True
        if ok.any():
            beta = np.linalg.solve(A[ok], sums[ok, :m])  # (k, m, D)
            out[ok] = beta[:, 0]
        todo &= ~ok
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


def smoothing_width(method: str, sigma: float | None = None) -> float | None:
    """The width in frames that ``method`` smooths with: ``sigma``, or the smoother's
    :data:`DEFAULT_SIGMA` when None; None for smoothers without one (one-euro, none)."""
    if method not in DEFAULT_SIGMA:
        return None
    return DEFAULT_SIGMA[method] if sigma is None else sigma


def smooth_track(
    x: np.ndarray, method: str, fps: float, sigma: float | None = None, **one_euro_kw: float
) -> np.ndarray:
    """:func:`local_poly_smooth` (``"poly"``), :func:`gaussian_smooth` (``sigma`` frames; None:
    the smoother's :data:`DEFAULT_SIGMA`), :func:`one_euro` or ``"none"`` (a copy)."""
    if method == "poly":
        return local_poly_smooth(x, smoothing_width(method, sigma))
    if method == "gaussian":
        return gaussian_smooth(x, smoothing_width(method, sigma))
    if method == "one-euro":
        return one_euro(x, fps, **one_euro_kw)
    if method == "none":
        return np.array(x, np.float64, copy=True)
    raise ValueError(f"smoothing must be one of {SMOOTHERS}, got {method!r}")

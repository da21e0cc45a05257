"""Full-covariance Gaussian mixtures in numpy: weighted EM fitting and log-density.

Used offline by ``scripts/fit_skin.py`` (fitting) and at run time (log-density, numpy path).
Samples may carry integer or real weights (e.g. counts of duplicate colours); EM on weighted
unique samples is exactly EM on the repeated rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class GaussianMixture:
    """K full-covariance Gaussians in D dimensions.

    Attributes:
        weights: ``(K,)`` mixing weights, sum 1.
        means: ``(K, D)``.
        covariances: ``(K, D, D)`` symmetric positive definite.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    @property
    def precision_cholesky(self) -> np.ndarray:
        """``(K, D, D)`` upper factors P with ``P @ P.T = inv(cov)``; ``(x - mu) @ P`` whitens."""
        chol = np.linalg.cholesky(self.covariances)  # lower L, cov = L L^T
        eye = np.broadcast_to(np.eye(chol.shape[-1]), chol.shape)
        return np.swapaxes(np.linalg.solve(chol, eye), -1, -2)  # (L^-1)^T

    @property
    def log_det_cov(self) -> np.ndarray:
        """``(K,)`` log-determinants of the covariances."""
        return np.linalg.slogdet(self.covariances)[1]


def component_log_prob(
    x: np.ndarray, means: np.ndarray, prec_chol: np.ndarray, log_det_cov: np.ndarray
) -> np.ndarray:
    """Per-component Gaussian log-density.

    Args:
        x: ``(M, D)`` samples. means: ``(K, D)``. prec_chol: ``(K, D, D)`` (see
            :attr:`GaussianMixture.precision_cholesky`). log_det_cov: ``(K,)``.

    Returns:
        ``(M, K)`` values of ``log N(x | mu_k, Sigma_k)``.
    """
    d = x.shape[1]
    out = np.empty((x.shape[0], means.shape[0]), dtype=np.result_type(x, means))
    for k in range(means.shape[0]):
        y = (x - means[k]) @ prec_chol[k]
        out[:, k] = -0.5 * (d * _LOG_2PI + log_det_cov[k] + np.einsum("md,md->m", y, y))
    return out


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def gmm_log_prob(x: np.ndarray, gmm: GaussianMixture) -> np.ndarray:
    """Mixture log-density ``log sum_k w_k N(x | mu_k, Sigma_k)``.

    Args:
        x: ``(M, D)``.

    Returns:
        ``(M,)``.
    """
    comp = component_log_prob(x, gmm.means, gmm.precision_cholesky, gmm.log_det_cov)
    return _logsumexp(comp + np.log(gmm.weights), axis=1)


def _kmeans_pp(x: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on weighted samples. Returns ``(k, D)`` centres."""
    p = w / w.sum()
    centres = [x[rng.choice(len(x), p=p)]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        q = w * d2
        centres.append(x[rng.choice(len(x), p=q / q.sum())])
        d2 = np.minimum(d2, ((x - centres[-1]) ** 2).sum(1))
    return np.stack(centres)


def _kmeans(x: np.ndarray, w: np.ndarray, centres: np.ndarray, iters: int) -> np.ndarray:
    """Weighted Lloyd iterations. Returns ``(M,)`` labels."""
    for _ in range(iters):
        labels = ((x[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        for j in range(len(centres)):
            sel = labels == j
            if w[sel].sum() > 0:
                centres[j] = np.average(x[sel], axis=0, weights=w[sel])
    return ((x[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)


def _m_step(
    x: np.ndarray, resp: np.ndarray, reg: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted M-step; ``resp (M, K)`` already includes the sample weights."""
    nk = resp.sum(0) + 1e-12
    means = (resp.T @ x) / nk[:, None]
    d = x.shape[1]
    covs = np.empty((len(nk), d, d))
    for k in range(len(nk)):
        diff = x - means[k]
        covs[k] = (resp[:, k, None] * diff).T @ diff / nk[k] + reg * np.eye(d)
    return nk / nk.sum(), means, covs


def fit_gmm(
    x: np.ndarray,
    k: int,
    sample_weight: np.ndarray | None = None,
    seed: int = 0,
    max_iter: int = 300,
    tol: float = 1e-7,
    reg_covar: float = 0.1,
) -> tuple[GaussianMixture, float, int]:
    """Fit a full-covariance GMM by EM (k-means++ and 10 Lloyd steps to initialise).

    Args:
        x: ``(M, D)`` samples.
        k: number of components.
        sample_weight: ``(M,)`` non-negative weights (counts of repeated samples); 1 if None.
        seed: seed of the initialisation (the only randomness).
        max_iter: EM iterations at most.
        tol: stop when the mean log-likelihood per unit weight improves by less than this.
        reg_covar: added to every covariance diagonal. The default 0.1 (in 0..255 colour units)
            is about the variance of 8-bit quantisation (1/12) and stops components collapsing
            onto single repeated colours.

    Returns:
        ``(gmm, mean log-likelihood per unit weight, iterations run)``.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    rng = np.random.default_rng(seed)
    labels = _kmeans(x, w, _kmeans_pp(x, w, k, rng), iters=10)
    resp = np.zeros((len(x), k))
    resp[np.arange(len(x)), labels] = 1.0
    gmm = GaussianMixture(*_m_step(x, resp * w[:, None], reg_covar))
    prev, ll, n_iter = -np.inf, -np.inf, 0
    while n_iter < max_iter:
        n_iter += 1
        comp = component_log_prob(x, gmm.means, gmm.precision_cholesky, gmm.log_det_cov)
        comp += np.log(gmm.weights)
        norm = _logsumexp(comp, axis=1)
        ll = float((w * norm).sum() / w.sum())
        resp = np.exp(comp - norm[:, None]) * w[:, None]
        gmm = GaussianMixture(*_m_step(x, resp, reg_covar))
        if ll - prev < tol:
            break
        prev = ll
    return gmm, ll, n_iter

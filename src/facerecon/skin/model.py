"""Naive-Bayes skin colour model: one Gaussian mixture for skin, one for non-skin colours.

``P(skin | x) = pi p_s(x) / (pi p_s(x) + (1 - pi) p_n(x))`` with mixtures fitted by
``scripts/fit_skin.py`` and stored in ``skin_gmm.npz`` next to this file. Colours are in 0..255
units in the model's colour space (see :func:`rgb_to_features`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facerecon.errors import ModelFileError
from facerecon.skin.gmm import GaussianMixture, component_log_prob

DEFAULT_MODEL_PATH = Path(__file__).with_name("skin_gmm.npz")

#: BT.601 studio-range RGB (0..255) -> YCbCr (Y 16..235, Cb/Cr 16..240), rows Y, Cb, Cr.
YCBCR_MATRIX = (
    np.array(
        [
            [65.481, 128.553, 24.966],
            [-37.797, -74.203, 112.0],
            [112.0, -93.786, -18.214],
        ]
    )
    / 255.0
)
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])

#: Feature dimensions of each supported colour space.
COLOUR_SPACES: dict[str, int] = {"ycbcr": 3, "cbcr": 2, "rgb": 3}


def rgb_to_features(rgb: np.ndarray, space: str) -> np.ndarray:
    """Map RGB colours in 0..255 to the classifier's features.

    Args:
        rgb: ``(..., 3)`` RGB, 0..255 (any float or integer dtype).
        space: "ycbcr" (BT.601, +16/+128 offsets), "cbcr" (its chroma only) or "rgb".

    Returns:
        ``(..., D)`` float64 features, D = ``COLOUR_SPACES[space]``.
    """
    return _features(np.asarray(rgb, dtype=np.float64), space, YCBCR_MATRIX, YCBCR_OFFSET)


def rgb_to_features_torch(rgb: torch.Tensor, space: str) -> torch.Tensor:
    """Torch twin of :func:`rgb_to_features`: ``(..., 3)`` RGB 0..255 -> ``(..., D)``."""
    if space == "rgb":
        return rgb
    m = torch.as_tensor(YCBCR_MATRIX, dtype=rgb.dtype, device=rgb.device)
    o = torch.as_tensor(YCBCR_OFFSET, dtype=rgb.dtype, device=rgb.device)
    return _features(rgb, space, m, o)


def _features(rgb, space: str, matrix, offset):
    """The features of ``space`` from ``rgb (..., 3)`` and the YCbCr ``matrix``/``offset`` as
    arrays of the same library (numpy or torch)."""
    if space == "rgb":
        return rgb
    ycc = rgb @ matrix.T + offset
    if space == "ycbcr":
        return ycc
    if space == "cbcr":
        return ycc[..., 1:]
    raise ModelFileError(f"unknown skin colour space {space!r}")


@dataclass(frozen=True)
class SkinModel:
    """Two mixtures and a prior.

    Attributes:
        space: colour space of the features (a key of ``COLOUR_SPACES``).
        skin: mixture of skin colours. nonskin: mixture of non-skin colours.
        prior: ``P(skin)`` used in the posterior (0.8 in the released code).
    """

    space: str
    skin: GaussianMixture
    nonskin: GaussianMixture
    prior: float

    def save(self, path: str | Path) -> None:
        """Write the model as a small ``.npz`` (float64 arrays, no pickles)."""
        arrays = {"space": np.array(self.space), "prior": np.array(self.prior)}
        for name, g in (("skin", self.skin), ("nonskin", self.nonskin)):
            arrays[f"{name}_weights"] = g.weights
            arrays[f"{name}_means"] = g.means
            arrays[f"{name}_covariances"] = g.covariances
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> SkinModel:
        """Read a model written by :meth:`save`; raises ModelFileError when unusable."""
        try:
            with np.load(path, allow_pickle=False) as z:
                space = str(z["space"])
                gmms = [
                    GaussianMixture(
                        z[f"{n}_weights"].astype(np.float64),
                        z[f"{n}_means"].astype(np.float64),
                        z[f"{n}_covariances"].astype(np.float64),
                    )
                    for n in ("skin", "nonskin")
                ]
                prior = float(z["prior"])
        except (OSError, KeyError, ValueError) as exc:
            raise ModelFileError(f"cannot read skin model {path}: {exc}") from None
        if space not in COLOUR_SPACES or not 0.0 < prior < 1.0:
            raise ModelFileError(f"skin model {path} has space {space!r} and prior {prior}")
        return cls(space, gmms[0], gmms[1], prior)

    def with_prior(self, prior: float) -> SkinModel:
        """The same mixtures with another skin prior."""
        return SkinModel(self.space, self.skin, self.nonskin, float(prior))

    def log_odds(self, features: np.ndarray) -> np.ndarray:
        """``(M, D)`` features -> ``(M,)`` posterior log-odds of skin (float64)."""
        return (
            _mixture_log_prob_np(features, self.skin)
            - _mixture_log_prob_np(features, self.nonskin)
            + np.log(self.prior / (1.0 - self.prior))
        )

    def probability(self, features: np.ndarray) -> np.ndarray:
        """``(M, D)`` features -> ``(M,)`` ``P(skin | x)`` (float64)."""
        return 0.5 * (1.0 + np.tanh(0.5 * self.log_odds(features)))


def _mixture_log_prob_np(x: np.ndarray, g: GaussianMixture) -> np.ndarray:
    comp = component_log_prob(x, g.means, g.precision_cholesky, g.log_det_cov)
    comp += np.log(g.weights)
    m = comp.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(comp - m).sum(axis=1, keepdims=True)))[:, 0]


def mixture_log_prob_torch(x: torch.Tensor, g: GaussianMixture) -> torch.Tensor:
    """Mixture log-density in torch.

    Args:
        x: ``(M, D)`` features (any float dtype / device).
        g: the mixture (numpy parameters, converted to ``x``'s dtype and device).

    Returns:
        ``(M,)``.
    """
    opts = {"dtype": x.dtype, "device": x.device}
    means = torch.as_tensor(g.means, **opts)  # (K, D)
    prec = torch.as_tensor(g.precision_cholesky, **opts)  # (K, D, D)
    const = torch.as_tensor(
        np.log(g.weights) - 0.5 * (g.log_det_cov + g.means.shape[1] * np.log(2 * np.pi)), **opts
    )
    k, d = means.shape
    # whiten all components with one matmul: y_k = x P_k - mu_k P_k
    flat = prec.permute(1, 0, 2).reshape(d, k * d)  # (D, K*D)
    shift = torch.einsum("kd,kde->ke", means, prec).reshape(k * d)
    y = (x @ flat - shift).reshape(-1, k, d)  # (M, K, D)
    return torch.logsumexp(const - 0.5 * (y * y).sum(-1), dim=1)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str) -> SkinModel:
    return SkinModel.load(path)


def load_skin_model(path: str | Path | None = None) -> SkinModel:
    """Load (and cache) the shipped skin model, or the one at ``path``."""
    return _load_cached(str(Path(path or DEFAULT_MODEL_PATH).resolve()))

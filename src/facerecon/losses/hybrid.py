"""Weights of the hybrid loss and their weighted sum."""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field

import torch

from facerecon.errors import FaceReconError


class LossTermError(FaceReconError, KeyError):
    """A loss term name has no weight in the configuration."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass
class HybridLossConfig:
    """Weights of the hybrid loss terms and the coefficient prior (paper values by default).

    Attributes:
        w_photo: photometric (paper 1.9; released code 1.92).
        w_landmark: 68-point landmark term (1.6e-3, landmarks in 224-pixel units).
        w_perceptual: identity/perceptual term (0.2; the released code uses 0.1 in its set stage).
        w_coef: coefficient regularisation (3e-4).
        w_tex: albedo flatness (5).
        w_light: lighting (white-light) regularisation (0 in the paper; 10 in the released code).
        alpha, beta, delta: weights of ||id||^2, ||exp||^2, ||tex||^2 inside the coefficient term
            (delta: paper 1.7e-3, released code 1.7e-2).
        extra: weights of further named terms (e.g. DF-MVR's "mask", "lm3d"); keys must not
            shadow the six built-in names.
    """

    w_photo: float = 1.9
    w_landmark: float = 1.6e-3
    w_perceptual: float = 0.2
    w_coef: float = 3e-4
    w_tex: float = 5.0
    w_light: float = 0.0
    alpha: float = 1.0
    beta: float = 0.8
    delta: float = 1.7e-3
    extra: dict[str, float] = field(default_factory=dict)

    @classmethod
    def paper(cls) -> HybridLossConfig:
        """The paper's weights (same as the defaults)."""
        return cls()

    @classmethod
    def released_code(cls) -> HybridLossConfig:
        """The weights of the released Deep3DFaceRecon code."""
        return cls(w_photo=1.92, delta=1.7e-2, w_light=10.0)

    def weights(self) -> dict[str, float]:
        """Term name -> weight, for the names :func:`hybrid_loss` accepts."""
        base = {
            "photo": self.w_photo,
            "landmark": self.w_landmark,
            "perceptual": self.w_perceptual,
            "coef": self.w_coef,
            "tex": self.w_tex,
            "light": self.w_light,
        }
        clash = set(base) & set(self.extra)
        if clash:
            raise LossTermError(f"extra loss weights shadow built-in terms: {sorted(clash)}")
        return {**base, **self.extra}


def hybrid_loss(
    terms: dict[str, torch.Tensor], config: HybridLossConfig | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weight and sum the loss terms a caller computed.

    Args:
        terms: name -> scalar tensor, names among "photo", "landmark", "perceptual", "coef",
            "tex", "light" (and ``config.extra``). Missing terms are simply not included.
        config: weights; paper weights when None.

    Returns:
        ``(total, weighted)``: the scalar sum and the dict of weighted terms (same keys).

    Raises:
        LossTermError: a term name has no weight.
    """
    config = config or HybridLossConfig()
    if not terms:
        raise LossTermError("hybrid_loss needs at least one term")
    weights = config.weights()
    unknown = sorted(set(terms) - set(weights))
    if unknown:
        raise LossTermError(f"unknown loss terms {unknown}; known: {sorted(weights)}")
    weighted = {name: weights[name] * value for name, value in terms.items()}
    total = functools.reduce(operator.add, weighted.values())  # promotes mixed dtypes
    return total, weighted

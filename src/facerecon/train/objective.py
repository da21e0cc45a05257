"""The R-Net training objective: the hybrid loss of predicted coefficients.

The terms are exactly those of analysis-by-synthesis fitting: this module calls
``facerecon.fit.core.hybrid_terms`` with a read-only view of the predicted coefficient vector
instead of the fitter's free parameters, so fitting and training cannot drift apart:

* photometric: skin attention x rendered front-face mask (no gradient through the mask),
* landmarks: the model's 68 landmark vertices projected (``out.uv[:, model.landmarks68]``),
* perceptual: face-recognition embeddings of the photo and of the render composited over the
  photo, both cropped with 5 points (the render's from its predicted landmarks),
* coefficient regularisation, albedo flatness over ``model.skin_mask``, optional lighting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from facerecon.fit.config import FitConfig, StageConfig
from facerecon.fit.core import FitTarget, hybrid_terms
from facerecon.losses import HybridLossConfig, hybrid_loss
from facerecon.morphable import MorphableModel
from facerecon.render import CameraConfig

__all__ = ["CoeffView", "rnet_loss", "rnet_terms"]

Embedder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class CoeffView:
    """Predicted coefficients ``(B, layout.size)`` seen through the attributes the fitting code
    reads (``ids()``, ``exp_coeff``, ``tex_coeff``, ``angles``, ``gamma``, ``trans``)."""

    id_coeff: torch.Tensor
    exp_coeff: torch.Tensor
    tex_coeff: torch.Tensor
    angles: torch.Tensor
    gamma: torch.Tensor
    trans: torch.Tensor

    @classmethod
    def from_vector(cls, model: MorphableModel, coeffs: torch.Tensor) -> CoeffView:
        return cls(**model.layout.split(coeffs))

    def ids(self) -> torch.Tensor:
        return self.id_coeff


def rnet_terms(
    model: MorphableModel,
    coeffs: torch.Tensor,
    image: torch.Tensor,
    lm68: torch.Tensor,
    attention: torch.Tensor,
    loss: HybridLossConfig | None = None,
    camera: CameraConfig | None = None,
    render_size: int = 224,
    facerec: Embedder | None = None,
    target_embedding: torch.Tensor | None = None,
    rasterizer: str = "torch",
) -> dict[str, torch.Tensor]:
    """Unweighted hybrid-loss terms of predicted coefficients.

    Args:
        model: face model whose layout the coefficients follow.
        coeffs: ``(B, layout.size)`` predicted by the R-Net (float32 for the renderer).
        image: ``(B, 3, 224, 224)`` the aligned photos in 0..1.
        lm68: ``(B, 68, 2)`` their landmarks in crop pixels.
        attention: ``(B, 1, 224, 224)`` skin attention.
        loss: weights (paper values when None); used here for the coefficient prior and to
            decide whether the lighting term is needed.
        camera: crop camera (paper's when None).
        render_size: side of the photometric render (the camera is scaled to it).
        facerec: ``(image, lm68) -> (B, D)`` embedder; None drops the perceptual term.
        target_embedding: ``(B, D)`` embedding of ``image`` (computed without gradient).
        rasterizer: ``facerecon.render.rasterize`` backend (``FitConfig.rasterizer``).

    Returns:
        name -> scalar tensor; keys among photo, landmark, perceptual, coef, tex, light.
    """
    camera = camera or CameraConfig()
    cfg = FitConfig(loss=loss or HybridLossConfig(), rasterizer=rasterizer)
    perceptual = facerec is not None and target_embedding is not None
    stage = StageConfig(iters=1, size=render_size, perceptual=perceptual, photometric=True)
    target = FitTarget(image=image, lm68=lm68, attention=attention)
    return hybrid_terms(
        model,
        CoeffView.from_vector(model, coeffs),
        target,
        camera,
        stage,
        cfg,
        facerec=facerec,
        target_embedding=target_embedding,
    )


def rnet_loss(
    model: MorphableModel,
    coeffs: torch.Tensor,
    image: torch.Tensor,
    lm68: torch.Tensor,
    attention: torch.Tensor,
    loss: HybridLossConfig | None = None,
    **kwargs,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted total and weighted terms (see :func:`rnet_terms` for the arguments)."""
    loss = loss or HybridLossConfig()
    terms = rnet_terms(model, coeffs, image, lm68, attention, loss, **kwargs)
    return hybrid_loss(terms, loss)

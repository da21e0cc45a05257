"""The R-Net training objective: the hybrid loss of predicted coefficients.

The terms are exactly those of analysis-by-synthesis fitting: this module calls
``facerecon.fit.core.hybrid_terms`` with a read-only view of the predicted coefficient vector
instead of the fitter's free parameters, so fitting and training cannot drift apart:

* photometric: skin attention x rendered front-face mask (no gradient through the mask),
* landmarks: the model's 68 landmark vertices projected (``out.uv[:, model.landmarks68]``),
* perceptual: face-recognition embeddings of the photo and of the render composited over the
  photo, both cropped with 5 points (the render's from its predicted landmarks),
* coefficient regularisation, albedo flatness over ``model.skin_mask``, optional lighting.

:class:`HybridStep` applies the objective to a training batch: it is the step function the
training engine (:mod:`facerecon.train.engine`) calls for R-Net and C-Net training.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from facerecon.fit.config import FitConfig, StageConfig
from facerecon.fit.core import FitTarget, hybrid_terms
from facerecon.losses import HybridLossConfig, hybrid_loss
from facerecon.morphable import MorphableModel
from facerecon.render import CameraConfig
from facerecon.train.data import prepare_batch

if TYPE_CHECKING:
    from facerecon.train.config import TrainConfig

__all__ = ["CoeffView", "HybridStep", "rnet_loss", "rnet_terms"]

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
    # the paper's landmark term (model vertices, weight 20 on nose and inner mouth, squared):
    # what the nets are trained with, independent of the fit's noise-aware defaults
    cfg = dataclasses.replace(
        FitConfig.paper(), loss=loss or HybridLossConfig(), rasterizer=rasterizer
    )
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
    model: MorphableModel, coeffs: torch.Tensor, *args: Any, **kwargs: Any
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted total and weighted terms: :func:`rnet_terms` (same arguments; ``loss`` holds
    the weights, the paper's when None) weighed by :func:`facerecon.losses.hybrid_loss`."""
    call = inspect.signature(rnet_terms).bind(model, coeffs, *args, **kwargs)
    loss = call.arguments["loss"] = call.arguments.get("loss") or HybridLossConfig()
    return hybrid_loss(rnet_terms(*call.args, **call.kwargs), loss)


class HybridStep:
    """Forward + hybrid loss of one batch: the engine's step function (training and
    validation) for networks trained with the hybrid loss.

    ``step(net, batch) -> (total, parts)``: the batch (:meth:`flat` of it) goes to ``device``
    (:func:`facerecon.train.data.prepare_batch`: image ``(N, 3, S, S)``, lm68 ``(N, 68, 2)``,
    attention ``(N, 1, S, S)``), :meth:`forward` runs the network (under bf16 autocast when
    ``cfg.amp == "bf16"`` on CUDA), the photos are embedded for the perceptual term without
    gradient, and :meth:`terms` gives the unweighted terms; the result is
    ``hybrid_loss(terms, cfg.loss)``: the scalar total and the weighted terms.

    Subclasses define :meth:`forward` and :meth:`terms` (and :meth:`flat` for batches with
    more than one leading axis).

    Args:
        cfg: the run (``loss``, ``perceptual``, ``skin_attention``, ``amp``, ``render_size``,
            ``rasterizer``).
        model: face model of the predicted coefficients.
        device: where the batch, the networks and the face model live.
    """

    def __init__(self, cfg: TrainConfig, model: MorphableModel, device: torch.device) -> None:
        self.cfg, self.model, self.device = cfg, model, device
        self.facerec: Embedder | None = None
        if cfg.perceptual and cfg.loss.w_perceptual:
            from facerecon.nets.facerec import embed, load_facerec

            self.facerec = functools.partial(embed, load_facerec(device=device))
        self.autocast = cfg.amp == "bf16" and device.type == "cuda"

    def flat(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch with one leading axis ``N`` (as the data loader gives it by default)."""
        return batch

    def forward(self, net: torch.nn.Module, image: torch.Tensor) -> Any:
        """The network's outputs for ``image (N, 3, S, S)`` (run under autocast)."""
        raise NotImplementedError

    def terms(
        self,
        batch: dict[str, Any],
        out: Any,
        image: torch.Tensor,
        lm68: torch.Tensor,
        attention: torch.Tensor,
        **render: Any,
    ) -> dict[str, torch.Tensor]:
        """Unweighted terms of :meth:`forward`'s ``out``; ``render`` holds ``render_size``,
        ``facerec``, ``target_embedding (N, D)`` and ``rasterizer`` for :func:`rnet_terms`."""
        raise NotImplementedError

    def __call__(
        self, net: torch.nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.cfg
        image, lm68, att = prepare_batch(self.flat(batch), self.device, cfg.skin_attention)
        ctx = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.autocast
            else contextlib.nullcontext()
        )
        with ctx:
            out = self.forward(net, image)
        target_emb = None
        if self.facerec is not None:
            with torch.no_grad():
                target_emb = self.facerec(image, lm68)
        terms = self.terms(
            batch,
            out,
            image,
            lm68,
            att,
            render_size=cfg.render_size,
            facerec=self.facerec,
            target_embedding=target_emb,
            rasterizer=cfg.rasterizer,
        )
        return hybrid_loss(terms, cfg.loss)

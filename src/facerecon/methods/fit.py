"""``fit``: analysis-by-synthesis from the mean face, as a :mod:`facerecon.methods` method."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from facerecon.errors import FaceReconError
from facerecon.fit import FitConfig, FitTarget, fit
from facerecon.methods.base import Embedder, Estimate, MethodSpec

if TYPE_CHECKING:
    from facerecon.morphable import MorphableModel

__all__ = ["FitMethod", "embedder_for", "fit_config_for"]


def embedder_for(cfg: FitConfig, spec: MethodSpec):
    """The face-recognition embedder when a stage of ``cfg`` has the perceptual term (and the
    spec allows it), else None (nothing is loaded)."""
    if spec.fast or not (cfg.coarse.perceptual or cfg.fine.perceptual):
        return None
    return spec.embedder()


def fit_config_for(cfg: FitConfig, shared_identity: bool, rasterizer: str | None) -> FitConfig:
    changes: dict[str, Any] = {"shared_identity": shared_identity}
    if rasterizer is not None:
        changes["rasterizer"] = rasterizer
    return dataclasses.replace(cfg, **changes)


class FitMethod:
    """``fit``: analysis-by-synthesis with the hybrid loss from the mean face.

    Args:
        model: the face model.
        config: stages and loss weights (``FitConfig()``: the paper's hybrid loss).
        facerec: embedder of the perceptual term (None: the term is off).
        rasterizer: overrides ``config.rasterizer`` when given.
    """

    name: ClassVar[str] = "fit"
    uses_rnet: ClassVar[bool] = False
    uses_more_landmarks: ClassVar[bool] = True
    stage: ClassVar[str] = "fitting"

    def __init__(
        self,
        model: MorphableModel,
        config: FitConfig | None = None,
        facerec: Embedder | None = None,
        rasterizer: str | None = None,
    ):
        self.model = model
        self.config = config or FitConfig()
        self.facerec = facerec
        self.rasterizer = rasterizer

    @classmethod
    def from_spec(cls, spec: MethodSpec, model: MorphableModel) -> FitMethod:
        if spec.cnet is not None:
            raise FaceReconError("--cnet needs R-Net features: use --method rnet or auto")
        cfg = FitConfig.fast() if spec.fast else FitConfig()
        return cls(model, cfg, embedder_for(cfg, spec), spec.rasterizer)

    def __call__(
        self, target: FitTarget, shared_identity: bool = False, init: torch.Tensor | None = None
    ) -> Estimate:
        """The fit of ``target``; ``init (B, layout.size)`` starts it from another estimate
        (default: the mean face, zero pose)."""
        t0 = time.perf_counter()
        cfg = fit_config_for(self.config, shared_identity, self.rasterizer)
        res = fit(self.model, target, cfg, facerec=self.facerec, init=init)
        seconds = time.perf_counter() - t0
        return Estimate(res.coeffs.detach(), None, res.history, seconds, stages={"fit": seconds})

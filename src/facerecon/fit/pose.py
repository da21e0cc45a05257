"""Head pose from 2D landmarks alone: a short landmark fit of the face model."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from facerecon.fit.config import FitConfig, StageConfig
from facerecon.fit.core import FitTarget, fit
from facerecon.morphable import MorphableModel

__all__ = ["estimate_yaws"]


def estimate_yaws(
    model: MorphableModel, lm68: torch.Tensor, size: int = 224, iters: int = 120
) -> np.ndarray:
    """Yaw (degrees, the sign of ``angles[1]``) of each face from its 68 crop landmarks
    ``(B, 68, 2)`` (in a ``size`` crop): the landmark stage of the fit (pose first, then
    shape), no photometric stages. ``(B,)``."""
    cfg = dataclasses.replace(
        FitConfig(), landmark_iters=iters, coarse=StageConfig(iters=0), fine=StageConfig(iters=0)
    )
    lm = lm68.to(model.mean_shape) * (224.0 / size)
    dummy = torch.zeros(lm.shape[0], 3, 8, 8, dtype=lm.dtype, device=lm.device)
    target = FitTarget(dummy, lm, attention=dummy[:, :1] + 1)
    angles = model.layout.split(fit(model, target, cfg).coeffs)["angles"]
    return np.rad2deg(angles[:, 1].detach().cpu().double().numpy())

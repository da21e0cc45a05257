"""facerecon.losses: the hybrid loss of Deng et al. 2019 as small pure functions.

Each term returns a scalar tensor; :func:`hybrid_loss` weights and sums the terms a caller has
with the weights of a :class:`HybridLossConfig` (paper values by default,
:meth:`HybridLossConfig.released_code` for the released code's).
"""

from facerecon.losses.hybrid import HybridLossConfig, LossTermError, hybrid_loss
from facerecon.losses.multiview import (
    cross_view_loss,
    dfmvr_landmark_weights,
    landmark3d_loss,
    landmark_norm_loss,
    parse_loss,
    sample_at_points,
    similarity_align,
)
from facerecon.losses.terms import (
    HEAVY_LANDMARKS,
    albedo_flatness_loss,
    coefficient_regularization,
    landmark_loss,
    landmark_weights,
    lighting_regularization,
    perceptual_loss,
    photometric_loss,
    photometric_mask,
    temporal_smoothness,
)

__all__ = [
    "HEAVY_LANDMARKS",
    "HybridLossConfig",
    "LossTermError",
    "albedo_flatness_loss",
    "coefficient_regularization",
    "cross_view_loss",
    "dfmvr_landmark_weights",
    "hybrid_loss",
    "landmark3d_loss",
    "landmark_loss",
    "landmark_norm_loss",
    "landmark_weights",
    "lighting_regularization",
    "parse_loss",
    "perceptual_loss",
    "photometric_loss",
    "photometric_mask",
    "sample_at_points",
    "similarity_align",
    "temporal_smoothness",
]

"""Analysis-by-synthesis fitting (the method that needs no trained network)."""

from facerecon.fit.config import SHAPE, FitConfig, StageConfig, calibrated_loss
from facerecon.fit.core import (
    FitResult,
    FitTarget,
    fit,
    fitted_landmarks,
    landmark_table,
    landmark_vertices,
    project_points,
)
from facerecon.fit.landmarks import (
    LandmarkSpec,
    landmark_spec,
    project_landmarks,
    spec_candidates,
    spec_landmarks,
)

__all__ = [
    "SHAPE",
    "FitConfig",
    "FitResult",
    "FitTarget",
    "LandmarkSpec",
    "StageConfig",
    "calibrated_loss",
    "fit",
    "fitted_landmarks",
    "landmark_spec",
    "landmark_table",
    "landmark_vertices",
    "project_landmarks",
    "project_points",
    "spec_candidates",
    "spec_landmarks",
]

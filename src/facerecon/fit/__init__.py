"""Analysis-by-synthesis fitting (the method that needs no trained network)."""

from facerecon.fit.config import FitConfig, StageConfig
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
    "FitConfig",
    "FitResult",
    "FitTarget",
    "LandmarkSpec",
    "StageConfig",
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

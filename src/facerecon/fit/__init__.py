"""Analysis-by-synthesis fitting (the method that needs no trained network)."""

from facerecon.fit.config import FitConfig, StageConfig
from facerecon.fit.core import (
    FitResult,
    FitTarget,
    fit,
    fitted_landmarks,
    landmark_table,
    landmark_vertices,
    project_landmarks,
    project_points,
)

__all__ = [
    "FitConfig",
    "FitResult",
    "FitTarget",
    "StageConfig",
    "fit",
    "fitted_landmarks",
    "landmark_table",
    "landmark_vertices",
    "project_landmarks",
    "project_points",
]

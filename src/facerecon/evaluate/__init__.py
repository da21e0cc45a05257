"""facerecon.evaluate: the paper's 3D accuracy protocol (crop, ICP with scale, RMSE in mm)."""

from facerecon.evaluate.benchmark import (
    Prediction,
    SyntheticBenchmarkConfig,
    run_synthetic_benchmark,
)
from facerecon.evaluate.errors import EvaluationError
from facerecon.evaluate.folders import evaluate_dirs, main_evaluate
from facerecon.evaluate.geometry import SurfaceQuery, closest_points_on_triangles
from facerecon.evaluate.icp import ICPConfig, ICPResult, Similarity, icp, umeyama
from facerecon.evaluate.metrics import EvalResult, error_colors, evaluate_mesh, region_labels
from facerecon.evaluate.peers import MediapipeConfig, MediapipeFaceMesh, PeerMesh
from facerecon.geometry import vertex_normals

__all__ = [
    "EvalResult",
    "EvaluationError",
    "ICPConfig",
    "ICPResult",
    "MediapipeConfig",
    "MediapipeFaceMesh",
    "PeerMesh",
    "Prediction",
    "Similarity",
    "SurfaceQuery",
    "SyntheticBenchmarkConfig",
    "closest_points_on_triangles",
    "error_colors",
    "evaluate_dirs",
    "evaluate_mesh",
    "icp",
    "main_evaluate",
    "region_labels",
    "run_synthetic_benchmark",
    "umeyama",
    "vertex_normals",
]

"""The paper's accuracy protocol: crop, align (ICP with scale), point-to-plane RMSE in mm.

Protocol (Deng et al. 2019, following Genova et al. 2018), as implemented here:

1. **Crop** the ground truth (GT) to the vertices within ``crop_mm`` (95 mm) of its nose tip.
   The nose tip is ``gt_vertices[nose_index]`` if given, else GT landmark 30 (iBUG, 0-based)
   or the middle point of 5 landmarks, else the GT vertex with the largest z (the model
   convention +z out of the face). Only GT is cropped; the prediction is used whole.
2. **Align** the prediction to the cropped GT with a similarity (rotation, translation,
   isotropic scale): Umeyama on corresponding landmarks when both sides have them (68, or 5
   when one side has only 5), else matched centroids at scale 1; then ICP in two stages:
   nearest-vertex point-to-point, then closest-point-on-surface point-to-plane (see
   :func:`default_icp_stages`). ``align=False`` measures the meshes as given.
3. **Measure**, for each cropped GT vertex ``q`` (direction GT -> prediction, as in the
   common protocol; every cropped GT vertex counts once, no trimming):

   - ``c``: the exact closest point on the aligned predicted triangle mesh;
   - point-to-plane distance ``|(q - c) . n_c|``, ``n_c`` the predicted surface's unit normal
     at ``c`` (barycentric interpolation of area-weighted vertex normals, i.e. the smooth
     surface's tangent plane). Inside a flat triangle this equals ``|q - c|``; it is smaller
     near creases/edges where the smooth normal is not parallel to ``q - c``;
   - point-to-surface distance ``|q - c|``;
   - vertex-to-vertex distance: ``q`` to the nearest predicted vertex.

   ``rmse_*`` is ``sqrt(mean(d^2))`` over the cropped GT vertices and ``mean_*`` is
   ``mean(d)``. All in millimetres (both meshes must be in mm).

Regions (``per_region``), from the GT's 68 landmarks (positions): a face frame with origin at
the nose tip (landmark 30), x from the subject's right eye centre (mean of 36..41) to the left
(mean of 42..47), y up from the outer-lip centre (mean of 48..59) towards the eye midpoint
(orthogonalised), z = x cross y. ``D`` is the inter-ocular distance. Using frame (x, y) only
(depth ignored), each cropped GT vertex gets the first matching label:

- ``eyes``: within 0.3 D of either eye centre;
- ``nose``: within 0.18 D of the nose polyline (27-28-29-30-33 and 31-32-33-34-35);
- ``mouth``: inside the ellipse centred on the outer-lip centre with semi-axes
  half the mouth-corner distance (48-54) + 0.15 D and half the lip height
  (mean 50..52 to mean 56..58) + 0.15 D;
- ``forehead``: above the highest brow landmark (17..26) + 0.05 D;
- ``cheeks``: between the lower-lip bottom (57) and the eye-centre line;
- ``other``: everything else (brows, temples, chin, jaw).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facerecon.evaluate.errors import EvaluationError
from facerecon.evaluate.geometry import SurfaceQuery
from facerecon.evaluate.icp import ICPConfig, ICPResult, Similarity, icp, initial_similarity
from facerecon.labels import FIVE_POINT_GROUPS

REGIONS = ("eyes", "nose", "mouth", "forehead", "cheeks", "other")

DEFAULT_CROP_MM = 95.0
"""GT crop radius (mm) around the nose tip of the paper's protocol (step 1 above)."""

# Error colour map: (error / vmax, RGB) control points, blue -> cyan -> green -> yellow -> red.
_RAMP = (
    (0.0, (0.0, 0.0, 1.0)),
    (0.25, (0.0, 1.0, 1.0)),
    (0.5, (0.0, 1.0, 0.0)),
    (0.75, (1.0, 1.0, 0.0)),
    (1.0, (1.0, 0.0, 0.0)),
)


def error_colors(errors: np.ndarray, vmax_mm: float = 5.0) -> np.ndarray:
    """Per-vertex RGB ``(M, 3)`` in 0..1 for errors ``(M,)`` mm: 0 blue, ``vmax_mm`` red
    (blue-cyan-green-yellow-red, linear in between, clipped above ``vmax_mm``)."""
    x = np.clip(np.asarray(errors, dtype=np.float64) / vmax_mm, 0.0, 1.0)
    stops = np.array([s for s, _ in _RAMP])
    rgb = np.array([c for _, c in _RAMP])
    return np.stack([np.interp(x, stops, rgb[:, k]) for k in range(3)], axis=-1)


@dataclass
class EvalResult:
    """Accuracy of one prediction against one GT mesh; all distances in mm.

    rmse_plane / mean_plane: point-to-plane (GT vertex to the predicted tangent plane at its
    closest surface point); rmse_point / mean_point: GT vertex to nearest predicted vertex;
    rmse_surface / mean_surface: GT vertex to closest predicted surface point;
    per_region: point-to-plane RMSE per region (empty without GT landmarks), with
    region_counts; n_points: cropped GT vertices M; similarity: prediction -> GT transform
    used; per_vertex_error (M,): point-to-plane distance of each cropped GT vertex, whose GT
    indices are gt_indices (M,); region_labels (M,) indices into ``REGIONS`` or -1.
    """

    rmse_plane: float
    rmse_point: float
    mean_point: float
    per_region: dict[str, float]
    n_points: int
    similarity: Similarity
    per_vertex_error: np.ndarray
    mean_plane: float = 0.0
    rmse_surface: float = 0.0
    mean_surface: float = 0.0
    median_plane: float = 0.0
    gt_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    region_counts: dict[str, int] = field(default_factory=dict)
    region_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    nose_tip: np.ndarray = field(default_factory=lambda: np.zeros(3))
    icp: list[ICPResult] = field(default_factory=list)

    def error_colors(self, vmax_mm: float = 5.0) -> np.ndarray:
        """RGB ``(M, 3)`` of :attr:`per_vertex_error` (see :func:`error_colors`)."""
        return error_colors(self.per_vertex_error, vmax_mm)

    def gt_vertex_colors(
        self, n_vertices: int, vmax_mm: float = 5.0, background: float = 0.75
    ) -> np.ndarray:
        """RGB ``(n_vertices, 3)`` for the whole GT mesh: error colours on cropped vertices,
        grey ``background`` elsewhere; ready for ``write_ply(..., colors=...)``."""
        out = np.full((n_vertices, 3), background)
        out[self.gt_indices] = self.error_colors(vmax_mm)
        return out

    def metrics(self) -> dict[str, float]:
        """Scalar metrics by name (mm), the ones summarised over a dataset."""
        return {
            "rmse_plane": self.rmse_plane,
            "mean_plane": self.mean_plane,
            "median_plane": self.median_plane,
            "rmse_surface": self.rmse_surface,
            "mean_surface": self.mean_surface,
            "rmse_point": self.rmse_point,
            "mean_point": self.mean_point,
        }

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-vertex arrays)."""
        out = {k: float(v) for k, v in self.metrics().items()}
        out["n_points"] = int(self.n_points)
        out["per_region"] = {k: float(v) for k, v in self.per_region.items()}
        out["region_counts"] = {k: int(v) for k, v in self.region_counts.items()}
        out["similarity"] = self.similarity.to_dict()
        out["icp_iterations"] = [r.iterations for r in self.icp]
        return out


def default_icp_stages() -> list[ICPConfig]:
    """Evaluation ICP: a fast nearest-vertex point-to-point stage (robust from a rough start),
    then closest-point-on-surface point-to-plane refinement (fast convergence, exact for
    different topologies). Both with isotropic scale and 90 % trimming."""
    return [
        ICPConfig(max_iterations=30, tolerance=1e-4, correspondence="vertex"),
        ICPConfig(max_iterations=30, tolerance=1e-6, point_to_plane=True),
    ]


def _mesh(name: str, vertices, triangles) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(triangles)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise EvaluationError(f"{name} vertices must be (N, 3), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise EvaluationError(f"{name} vertices contain NaN or inf")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or not np.issubdtype(f.dtype, np.integer):
        raise EvaluationError(f"{name} triangles must be a non-empty (F, 3) int array")
    if f.min() < 0 or f.max() >= len(v):
        raise EvaluationError(f"{name} triangles index vertices outside 0..{len(v) - 1}")
    return v, f.astype(np.int64)


def landmark_points(name: str, landmarks, vertices: np.ndarray) -> np.ndarray | None:
    """Landmarks as positions ``(K, 3)``: given as ``(K,)`` vertex indices or ``(K, 3)``
    positions; K must be 68 or 5. None passes through."""
    if landmarks is None:
        return None
    lm = np.asarray(landmarks)
    if lm.ndim == 1 and np.issubdtype(lm.dtype, np.integer):
        if lm.min(initial=0) < 0 or lm.max(initial=0) >= len(vertices):
            raise EvaluationError(f"{name} landmark indices outside the mesh")
        lm = vertices[lm]
    lm = np.asarray(lm, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] != 3 or len(lm) not in (5, 68):
        raise EvaluationError(f"{name} landmarks must be 68 or 5 points (indices or (K, 3))")
    return lm


def five_from_68(lm68: np.ndarray) -> np.ndarray:
    """``(68, 3) -> (5, 3)``: eye centres, nose tip, mouth corners (the paper's 5 points)."""
    return np.stack([lm68[list(g)].mean(axis=0) for g in FIVE_POINT_GROUPS])


def _nose_tip(gt: np.ndarray, gt_lm: np.ndarray | None, nose_index: int | None) -> np.ndarray:
    if nose_index is not None:
        if not 0 <= int(nose_index) < len(gt):
            raise EvaluationError(f"nose_index {nose_index} outside 0..{len(gt) - 1}")
        return gt[int(nose_index)]
    if gt_lm is not None:
        return gt_lm[30] if len(gt_lm) == 68 else gt_lm[2]
    return gt[np.argmax(gt[:, 2])]


def crop_indices(vertices: np.ndarray, center: np.ndarray, radius_mm: float) -> np.ndarray:
    """Indices ``(M,)`` of ``vertices (N, 3)`` within ``radius_mm`` of ``center (3,)``."""
    return np.flatnonzero(np.linalg.norm(vertices - center, axis=1) <= radius_mm)


def _segment_distance_2d(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances ``(M,)`` from 2D points ``p (M, 2)`` to the segment ``a``-``b``."""
    ab = b - a
    t = np.clip((p - a) @ ab / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def region_labels(points: np.ndarray, lm68: np.ndarray) -> np.ndarray:
    """Region index ``(M,)`` into ``REGIONS`` for ``points (M, 3)`` from GT landmark positions
    ``lm68 (68, 3)`` (definitions in the module docstring)."""
    eye_r, eye_l = lm68[36:42].mean(axis=0), lm68[42:48].mean(axis=0)
    mouth = lm68[48:60].mean(axis=0)
    d_io = float(np.linalg.norm(eye_l - eye_r))
    ex = (eye_l - eye_r) / d_io
    up = 0.5 * (eye_l + eye_r) - mouth
    ey = up - (up @ ex) * ex
    ey /= np.linalg.norm(ey)
    origin = lm68[30]

    def xy(p: np.ndarray) -> np.ndarray:
        return np.stack([(p - origin) @ ex, (p - origin) @ ey], axis=-1)

    p, lm = xy(points), xy(lm68)
    labels = np.full(len(points), REGIONS.index("other"))
    free = np.ones(len(points), bool)

    def assign(name: str, mask: np.ndarray) -> None:
        nonlocal free
        labels[free & mask] = REGIONS.index(name)
        free = free & ~mask

    eyes = np.minimum(
        np.linalg.norm(p - lm[36:42].mean(0), axis=1), np.linalg.norm(p - lm[42:48].mean(0), axis=1)
    )
    assign("eyes", eyes <= 0.3 * d_io)
    chain = [(27, 28), (28, 29), (29, 30), (30, 33), (31, 32), (32, 33), (33, 34), (34, 35)]
    nose = np.min([_segment_distance_2d(p, lm[i], lm[j]) for i, j in chain], axis=0)
    assign("nose", nose <= 0.18 * d_io)
    c = lm[48:60].mean(axis=0)
    a = 0.5 * np.linalg.norm(lm[54] - lm[48]) + 0.15 * d_io
    b = 0.5 * np.linalg.norm(lm[50:53].mean(0) - lm[56:59].mean(0)) + 0.15 * d_io
    assign("mouth", ((p[:, 0] - c[0]) / a) ** 2 + ((p[:, 1] - c[1]) / b) ** 2 <= 1.0)
    assign("forehead", p[:, 1] >= lm[17:27, 1].max() + 0.05 * d_io)
    eye_line = 0.5 * (lm[36:42, 1].mean() + lm[42:48, 1].mean())
    assign("cheeks", (p[:, 1] <= eye_line) & (p[:, 1] >= lm[57, 1]))
    return labels


def evaluate_mesh(
    pred_vertices,
    pred_triangles,
    gt_vertices,
    gt_triangles,
    gt_landmarks=None,
    pred_landmarks=None,
    nose_index: int | None = None,
    crop_mm: float = DEFAULT_CROP_MM,
    *,
    align: bool = True,
    icp_stages: list[ICPConfig] | None = None,
) -> EvalResult:
    """Evaluate a predicted mesh against a GT mesh with the paper's protocol (module docs).

    pred_vertices (N, 3) mm, pred_triangles (F, 3); gt_vertices (G, 3) mm, gt_triangles
    (H, 3) or None (the metric uses GT vertices, those the triangles use when they are given,
    so a point-cloud scan works; GT topology may differ from the prediction's). Landmarks: (68,) or
    (5,) vertex indices, or (68, 3) / (5, 3) positions. ``icp_stages`` replaces
    :func:`default_icp_stages`; ``align=False`` skips alignment (identity similarity).
    """
    pv, pf = _mesh("prediction", pred_vertices, pred_triangles)
    scan = gt_triangles is None
    if scan:  # a point-cloud scan: only its vertices are used
        gt_triangles = np.zeros((1, 3), np.int64)
    gv, gf = _mesh("ground-truth", gt_vertices, gt_triangles)
    gt_lm = landmark_points("ground-truth", gt_landmarks, gv)
    pred_lm = landmark_points("prediction", pred_landmarks, pv)
    nose = _nose_tip(gv, gt_lm, nose_index)
    idx = crop_indices(gv, nose, crop_mm)
    if not scan:  # a vertex no GT triangle uses is not on its surface (bfm-lite's nostril pits)
        on_surface = np.zeros(len(gv), bool)
        on_surface[gf.ravel()] = True
        idx = idx[on_surface[idx]]
    if len(idx) < 3:
        raise EvaluationError(f"fewer than 3 ground-truth vertices within {crop_mm} mm of the nose")
    q = gv[idx]

    sim = Similarity.identity()
    runs: list[ICPResult] = []
    if align:
        if gt_lm is not None and pred_lm is not None and len(gt_lm) != len(pred_lm):
            gt_lm = five_from_68(gt_lm) if len(gt_lm) == 68 else gt_lm
            pred_lm = five_from_68(pred_lm) if len(pred_lm) == 68 else pred_lm
        sim = initial_similarity(pv, q, pred_lm, gt_lm)
        for cfg in icp_stages if icp_stages is not None else default_icp_stages():
            res = icp(pv, q, pf, init=sim, config=cfg)
            runs.append(res)
            sim = res.similarity

    query = SurfaceQuery(sim.apply(pv), pf)
    hit = query.closest(q)
    n = query.normals_at(hit)
    d_plane = np.abs(np.sum((q - hit.point) * n, axis=1))
    d_surf = hit.distance
    d_vert, _ = query.nearest_vertex(q)

    per_region: dict[str, float] = {}
    counts: dict[str, int] = {}
    labels = np.full(len(q), -1)
    gt_lm68 = landmark_points("ground-truth", gt_landmarks, gv)
    if gt_lm68 is not None and len(gt_lm68) == 68:
        labels = region_labels(q, gt_lm68)
        for k, name in enumerate(REGIONS):
            sel = labels == k
            counts[name] = int(sel.sum())
            if sel.any():
                per_region[name] = float(np.sqrt(np.mean(d_plane[sel] ** 2)))

    def rmse(d: np.ndarray) -> float:
        return float(np.sqrt(np.mean(d**2)))

    return EvalResult(
        rmse_plane=rmse(d_plane),
        rmse_point=rmse(d_vert),
        mean_point=float(d_vert.mean()),
        per_region=per_region,
        n_points=len(q),
        similarity=sim,
        per_vertex_error=d_plane,
        mean_plane=float(d_plane.mean()),
        rmse_surface=rmse(d_surf),
        mean_surface=float(d_surf.mean()),
        median_plane=float(np.median(d_plane)),
        gt_indices=idx,
        region_counts=counts,
        region_labels=labels,
        nose_tip=nose,
        icp=runs,
    )


#: views of :func:`scanned_triangles`: yaw angles (degrees) of a frontal three-view scanner
SCAN_YAWS = (-40.0, 0.0, 40.0)


def scanned_triangles(
    vertices: np.ndarray,
    triangles: np.ndarray,
    yaws: tuple[float, ...] = SCAN_YAWS,
    pixel_mm: float = 0.4,
) -> np.ndarray:
    """``(F,)`` bool: the triangles of a face mesh a scanner would capture, i.e. that some
    orthographic view from ``yaws`` (about the vertical axis, the face looking down +z) sees
    in its z-buffer (``pixel_mm`` per pixel).

    Synthetic ground truth is a whole mesh; a real scan (what the paper's protocol was made
    for) holds only the outer surface its cameras saw. ICT-FaceKit's face area runs ~30 mm into
    the nasal cavity (7 % of the 95 mm crop's points), which no scan captures and no 3DMM
    surface follows: scored, they add the same large error to every method.
    """
    import torch

    from facerecon.render import rasterize

    v = np.asarray(vertices, np.float64)
    seen = np.zeros(len(triangles), bool)
    tri = torch.as_tensor(np.asarray(triangles, np.int64))
    for yaw in yaws:
        a = np.deg2rad(yaw)
        rot = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])
        p = v @ rot.T
        lo, hi = p[:, :2].min(0), p[:, :2].max(0)
        size = np.ceil((hi - lo) / pixel_mm).astype(int) + 3
        uv = np.stack([(p[:, 0] - lo[0]) / pixel_mm + 1, (hi[1] - p[:, 1]) / pixel_mm + 1], -1)
        depth = p[:, 2].max() - p[:, 2] + 1.0  # positive, nearer the viewer is smaller
        frags = rasterize(torch.as_tensor(uv[None]), torch.as_tensor(depth[None]), tri,
                          (int(size[1]), int(size[0])))  # fmt: skip
        ids = frags.face_idx[0]
        seen[np.unique(ids[ids >= 0].numpy())] = True
    return seen

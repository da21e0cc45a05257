"""The ``synthetic-ict`` accuracy benchmark: the paper's protocol on rendered ICT faces.

Ground truth comes from a *different* face model than the one we reconstruct with: faces of
the ICT FaceKit model are rendered by :class:`facerecon.data.synthetic.SyntheticFaces` and
reconstructed with the default ``bfm-lite`` model, so no method can win by sharing the
generator's basis. Every prediction is scored with :func:`evaluate_mesh` (crop 95 mm around
the GT nose tip, similarity ICP with isotropic scale initialised from landmarks, point-to-plane
RMSE in mm, per-region RMSE).

Protocol (all choices fixed by :class:`SyntheticBenchmarkConfig`):

- **Images**: ``n_identities`` ICT identities x ``n_conditions`` conditions each, drawn from
  ``SyntheticFaces(ict, SynthConfig(...), seed)`` with ``sample(identity, condition)``. Poses are
  wide but detectable: ``|yaw| <= max_yaw_deg`` (45), ``|pitch| <= 20``, ``|roll| <= 15``
  degrees; expression, lighting, background, occluders, blur, noise and JPEG are the engine's
  defaults (``clean=False``). The same seed gives the same images.
- **Single images** (section ``single``): each method reconstructs each image; the GT is the
  sample's ``vertices_model`` (identity + expression, model space, mm). Our ``fit`` goes through
  the real path: ``detect_one`` -> ``align`` -> ``fit``, with the detectors of ``detectors``
  tried in order: dlib HOG (the product default) and, where it finds nothing, MediaPipe (the
  CLI's ``--detector mediapipe``). Each record says which detector found the face and the
  summary counts them (``detected_by``), so the dlib-only failure count is always visible; a
  photo where no detector finds a face is counted under ``failures`` and left out of the mean
  (never silently dropped). (The rendered faces have no hair, ears or neck; dlib's HOG template
  misses ~60 % of them, MediaPipe ~10 %.)
  ``mean-face`` (bfm-lite with zero coefficients) is the baseline a method must beat for its
  numbers to mean anything.
- **Image sets** (section ``sets``, the paper's Table 4 layout; one value per identity, GT its
  ``vertices_neutral``): the per-identity mean of the single-image errors (vs the posed GT, as
  in the paper), the single fits' identity alone (expression 0) vs the neutral GT, shape
  averaging (mean ``id_coeff`` of the single fits, expression 0), the joint fit
  (``FitConfig.shared_identity``, expression 0), the mean face, and a diagnostic oracle: the
  bfm-lite identity fitted to the GT shape itself in 3D (:func:`oracle_fit`), i.e. about the
  best any bfm-lite method could score under this protocol.
- **3-view triples** (section ``multiview``): ``triple(identity, yaws_deg)`` (left / front /
  right, -45 / 0 / 45 degrees); the front view's mesh (identity + its expression) vs its
  ``vertices_model``: a fit of the front view alone against a joint fit of all three views.

Methods are plain callables, so learned regressors (R-Net, C-Net, DF-MVR) plug in next to the
built-ins: ``single`` name -> ``f(samples) -> [Prediction | None]`` (one per sample, None =
failure); ``sets`` name -> ``f(samples, singles) -> Prediction | None`` (one neutral shape for
an identity's images; ``singles`` holds each single method's predictions for them);
``multiview`` name -> ``f(triple) -> Prediction | None`` (the front view's mesh).

ICP: the protocol's two stages are kept (nearest-vertex point-to-point, then point-to-plane)
but the point-to-plane stage runs on nearest vertices first and finishes with
``surface_iterations`` exact closest-point iterations (:func:`benchmark_icp_stages`); this is
within ~0.01 mm of :func:`facerecon.evaluate.metrics.default_icp_stages` and 2-4x faster.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facerecon.detect.faces import DEFAULT_DETECTOR
from facerecon.evaluate.errors import EvaluationError

if TYPE_CHECKING:
    import torch
from facerecon.evaluate.icp import ICPConfig
from facerecon.evaluate.metrics import DEFAULT_CROP_MM, REGIONS, evaluate_mesh, scanned_triangles

__all__ = [
    "Detections",
    "MethodRows",
    "Prediction",
    "SyntheticBenchmarkConfig",
    "TrueLandmarks",
    "ablation_methods",
    "benchmark_icp_stages",
    "fit_methods",
    "mean_face_methods",
    "mediapipe_method",
    "net_methods",
    "run_synthetic_benchmark",
    "summarize",
    "true_landmark_methods",
]

SECTIONS = ("single", "single_neutral", "by_yaw", "by_yaw_neutral", "sets", "multiview")


@dataclass
class SyntheticBenchmarkConfig:
    """What ``synthetic-ict`` runs (module docstring). ``quick`` replaces the sizes with
    ``quick_identities`` x ``quick_conditions`` and fits with ``FitConfig.fast()``."""

    n_identities: int = 50
    n_conditions: int = 8
    n_triples: int | None = None  # identities that also get a 3-view triple (None: all)
    seed: int = 2019
    gt_model: str | Path = "ict"  # name or .npz path for load_face_model
    model: str = "bfm-lite"  # the model we reconstruct with
    methods: tuple[str, ...] = ("fit", "mean-face", "mediapipe", "oracle")
    # facerecon.detect.detector_for names, tried in order until one finds a face (records say
    # which one did); the product's default for photos, DEFAULT_DETECTOR
    detectors: tuple[str, ...] = (DEFAULT_DETECTOR,)
    max_yaw_deg: float = 45.0
    max_pitch_deg: float = 20.0
    max_roll_deg: float = 15.0
    triple_yaws_deg: tuple[float, float, float] = (-45.0, 0.0, 45.0)
    fast_fit: bool = False  # FitConfig.fast() (no perceptual term) instead of FitConfig()
    crop_mm: float = DEFAULT_CROP_MM
    surface_iterations: int = 1
    quick: bool = False
    quick_identities: int = 3
    quick_conditions: int = 3
    quick_triples: int = 1
    oracle_iterations: int = 4
    oracle_reg: float = 1.0
    device: str = "cpu"
    ablation: bool = False  # Table-1 rows on the fitting path (see ablation_methods)
    # diagnostic rows "fit: true landmarks" (and "auto: ..."): the renders' true landmarks in
    # place of the detectors' (true_landmark_methods)
    true_landmarks: bool = False
    rnet: str | None = None  # R-Net weights: adds "rnet" and "auto" (and the sets' averaging)
    # the renders' albedo (SynthConfig.albedo): "photo-detail" (the model's albedo times the
    # photo textures' detail: photo-like eyes, brows, lips and skin, detectors behave as on
    # photos, and the shading is the true shape's), "photo" (whole photo textures, the source
    # person's shading baked in) or "model" (the albedo basis); texture_dir None: shipped ones
    albedo: str = "photo-detail"
    texture_dir: str | None = None
    yaw_bins: tuple[float, ...] = (15.0, 30.0, 45.0, 60.0, 90.0)  # |yaw| bin edges (degrees)
    cnet: str | None = None  # C-Net weights (needs rnet): adds the S1..S4 set rows

    def synth_config(self):
        """The :class:`facerecon.data.synthetic.SynthConfig` of the renders: this config's
        pose limits, albedo and textures, the engine's defaults otherwise."""
        from facerecon.data.synthetic import SynthConfig

        return SynthConfig(
            max_yaw_deg=self.max_yaw_deg,
            max_pitch_deg=self.max_pitch_deg,
            max_roll_deg=self.max_roll_deg,
            albedo=self.albedo,
            texture_dir=self.texture_dir,
        )

    def sizes(self) -> tuple[int, int, int]:
        """(identities, conditions per identity, identities with a triple) actually run."""
        n_id = self.quick_identities if self.quick else self.n_identities
        n_cond = self.quick_conditions if self.quick else self.n_conditions
        n_tri = n_id if self.n_triples is None else min(self.n_triples, n_id)
        if self.quick:
            n_tri = min(n_tri, self.quick_triples)
        return n_id, n_cond, n_tri


@dataclass
class Prediction:
    """A predicted mesh in mm-like units (scale is free: ICP estimates it).

    vertices ``(N, 3)``; triangles ``(F, 3)``; landmarks ``(68, 3)`` or ``(5, 3)`` positions
    (for the ICP initialisation) or None; neutral ``(N, 3)``: the identity alone (expression
    0) when the method has one; id_coeff ``(K,)`` when it is a 3DMM fit.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    landmarks: np.ndarray | None = None
    neutral: np.ndarray | None = None
    id_coeff: np.ndarray | None = None
    neutral_landmarks: np.ndarray | None = None
    info: dict = field(default_factory=dict)  # copied into the records (e.g. the detector)


SingleMethod = Callable[[list[Any]], list[Prediction | None]]
SetMethod = Callable[[list[Any], dict[str, list[Prediction | None]]], Prediction | None]
MultiviewMethod = Callable[[list[Any]], Prediction | None]


def benchmark_icp_stages(surface_iterations: int = 1) -> list[ICPConfig]:
    """Evaluation ICP used here: point-to-point on nearest vertices, point-to-plane on nearest
    vertices, then ``surface_iterations`` point-to-plane steps on exact closest surface points
    (all with isotropic scale and 90 % trimming, as the default stages)."""
    return [
        ICPConfig(max_iterations=30, tolerance=1e-4, correspondence="vertex"),
        ICPConfig(max_iterations=30, tolerance=1e-5, correspondence="vertex", point_to_plane=True),
        ICPConfig(max_iterations=surface_iterations, tolerance=1e-6, point_to_plane=True),
    ]


# ----------------------------------------------------------------------------------------------
# built-in methods


def _model_mesh(model, coeffs: torch.Tensor) -> list[Prediction]:
    """Predictions from fitted coefficients ``(B, layout.size)``: posed and neutral meshes."""
    import torch

    parts = model.layout.split(coeffs)
    with torch.no_grad():
        posed = model.shape(parts["id_coeff"], parts["exp_coeff"])
        neutral = model.shape(parts["id_coeff"], torch.zeros_like(parts["exp_coeff"]))
    tri = model.triangles.cpu().numpy()
    lm = model.landmarks68.cpu().numpy()
    out = []
    for k in range(len(coeffs)):
        v = posed[k].double().cpu().numpy()
        n = neutral[k].double().cpu().numpy()
        out.append(
            Prediction(
                v,
                tri,
                v[lm],
                n,
                parts["id_coeff"][k].double().cpu().numpy(),
                neutral_landmarks=n[lm],
            )
        )
    return out


def _neutral_from_id(model, id_coeff: np.ndarray) -> Prediction:
    """The identity ``id_coeff (K,)`` with expression 0 as a prediction (posed = neutral)."""
    import torch

    ids = torch.as_tensor(id_coeff, dtype=model.mean_shape.dtype)[None]
    with torch.no_grad():
        v = model.shape(ids, torch.zeros(1, model.layout.n_exp, dtype=ids.dtype))[0]
    v = v.double().cpu().numpy()
    lm = v[model.landmarks68.cpu().numpy()]
    return Prediction(v, model.triangles.cpu().numpy(), lm, v, np.asarray(id_coeff), lm)


class Detections:
    """The product's detect -> align path, cached per sample object: every method row of a
    benchmark sees the same crops (the cache keeps the sample alive, so its id is not reused).

    ``detectors`` (:class:`facerecon.detect.FaceDetector`) are tried in order until one finds a
    face (empty: the default dlib HOG).
    """

    def __init__(self, detectors: Sequence = ()):
        self.detectors = list(detectors)
        self._aligned: dict[int, tuple[Any, Any, str | None]] = {}
        self._alt: dict[int, dict] = {}

    def aligned(self, sample) -> Any | None:
        """The sample's ``AlignedFace`` or None when no detector finds a face."""
        return self._detect(sample)[0]

    def detector_of(self, sample) -> str | None:
        """Backend name of the detector that found the sample's face (None: none did)."""
        return self._detect(sample)[1]

    def _detect(self, sample) -> tuple[Any | None, str | None]:
        hit = self._aligned.get(id(sample))
        if hit is not None and hit[0] is sample:
            return hit[1], hit[2]
        aligned, backend, alt = self._find(sample)
        self._aligned[id(sample)] = (sample, aligned, backend)
        self._alt[id(sample)] = alt
        return aligned, backend

    def _find(self, sample) -> tuple[Any | None, str | None, dict]:
        """``(aligned face or None, backend name, other detectors' crop landmarks)`` of a
        sample, uncached: the detectors in order until one finds a face."""
        from facerecon.detect import align, detect_one
        from facerecon.errors import FaceReconError

        for det in self.detectors or [None]:
            try:
                face = detect_one(sample.image, detector_obj=det)
            except FaceReconError:
                continue
            aligned = align(sample.image, face.lm68)
            alt = {k: aligned.transform.to_crop(v) for k, v in face.alt_lm68.items()}
            return aligned, face.detector or "dlib hog", alt
        return None, None, {}

    def alt_of(self, sample) -> dict:
        """Other detectors' landmarks of the sample's face, ``{name: (68, 2)}`` crop pixels."""
        self._detect(sample)
        return self._alt.get(id(sample), {})

    def clear(self) -> None:
        """Forget cached detections (call between identities to bound memory)."""
        self._aligned.clear()
        self._alt.clear()


class TrueLandmarks(Detections):
    """A :class:`Detections` that aligns each render on its *true* 68 landmarks (the model's
    landmark vertices projected, ``FaceSample.lm68``) as if a detector made no error, and
    names them ``"true landmarks"`` (no calibration: a fit takes the model's own vertices,
    which is what they are). Input of the diagnostic rows that show what the detectors' error
    costs a method (``SyntheticBenchmarkConfig.true_landmarks``); never a product path."""

    NAME = "true landmarks"

    def _find(self, sample) -> tuple[Any, str, dict]:
        from facerecon.detect import align

        return align(sample.image, np.asarray(sample.lm68, dtype=np.float64)), self.NAME, {}


def true_landmark_methods(model, fit_config, refine_config=None, rnet=None, facerec=None):
    """Diagnostic single-image rows on :class:`TrueLandmarks`: ``fit`` (and with an R-Net
    ``auto``) with the renders' true landmarks, their jaw points on the model's fixed jaw
    vertices as the truth's are (no silhouette contour): the shape a method would recover if
    its landmarks had no detector error."""
    from facerecon.methods import AutoMethod, FitMethod, RNetMethod

    truth = TrueLandmarks()
    cfg = dataclasses.replace(fit_config, contour_landmarks=False)
    rows = {"fit: true landmarks": MethodRows(FitMethod(model, cfg, facerec), truth).single}
    if rnet is not None and refine_config is not None:
        refine = dataclasses.replace(refine_config, contour_landmarks=False)
        auto = AutoMethod(RNetMethod(model, rnet), FitMethod(model, refine, facerec))
        rows["auto: true landmarks"] = MethodRows(auto, truth).single
    return rows


class MethodRows:
    """A :mod:`facerecon.methods` method run through the benchmark's protocol: its single-image,
    image-set and multi-view rows, all on the crops of one :class:`Detections`.

    Args:
        method: a built method (``facerecon.methods``), called on the detected crops.
        detections: shared detect -> align cache.
        skin_attention: False gives every face pixel photometric weight 1 (Table-1 ablation).

    ``seconds`` / ``images`` count the single-image calls (seconds per reconstructed image).
    """

    def __init__(self, method, detections: Detections, skin_attention: bool = True):
        self.method = method
        self.model = method.model
        self.detections = detections
        self.skin_attention = skin_attention
        self.seconds = 0.0
        self.images = 0

    def _coeffs(self, samples: list, shared_identity: bool) -> torch.Tensor:
        import torch

        from facerecon.methods import crops_target

        faces = [self.detections.aligned(s) for s in samples]
        detectors = tuple(self.detections.detector_of(s) for s in samples)
        alt = [self.detections.alt_of(s) for s in samples]
        target = crops_target(faces, self.model.mean_shape, detectors, alt)
        if not self.skin_attention:
            target.attention = torch.ones_like(target.image[:, :1])
        return self.method(target, shared_identity).coeffs

    def _predict(self, samples: list, shared_identity: bool) -> list[Prediction | None]:
        faces = [self.detections.aligned(s) for s in samples]
        ok = [k for k, f in enumerate(faces) if f is not None]
        out: list[Prediction | None] = [None] * len(samples)
        if not ok:
            return out
        t0 = time.perf_counter()
        coeffs = self._coeffs([samples[k] for k in ok], shared_identity)
        if not shared_identity:
            self.seconds += time.perf_counter() - t0
            self.images += len(ok)
        for k, pred in zip(ok, _model_mesh(self.model, coeffs), strict=True):
            if not shared_identity:
                pred.info["detector"] = self.detections.detector_of(samples[k])
            out[k] = pred
        return out

    def single(self, samples: list) -> list[Prediction | None]:
        """Single-image method: each detected sample reconstructed on its own (batched)."""
        return self._predict(samples, False)

    def joint(self, samples: list) -> list[Prediction | None]:
        """One identity for all detected samples; per-sample predictions (None: undetected)."""
        return self._predict(samples, True)

    def joint_neutral(self, samples: list, singles: dict | None = None) -> Prediction | None:
        """Set method: the method's shared identity over the set, expression 0."""
        preds = [p for p in self.joint(samples) if p is not None]
        return _neutral_from_id(self.model, preds[0].id_coeff) if preds else None

    def shape_average(self, key: str) -> SetMethod:
        """Set method: mean ``id_coeff`` of the single-image row ``key``, expression 0."""

        def run(samples: list, singles: dict) -> Prediction | None:
            ids = [p.id_coeff for p in singles.get(key, []) if p is not None]
            return _neutral_from_id(self.model, np.mean(ids, axis=0)) if ids else None

        return run

    def front_only(self, triple: list) -> Prediction | None:
        """Multi-view method: the middle (frontal) view alone."""
        return self.single([triple[len(triple) // 2]])[0]

    def joint_front(self, triple: list) -> Prediction | None:
        """Multi-view method: all views with one identity; the frontal view's mesh."""
        return self.joint(triple)[len(triple) // 2]


def fit_methods(
    model, fit_config, facerec=None, detections: Detections | None = None
) -> tuple[dict, dict, dict, MethodRows]:
    """``(single, sets, multiview, rows)`` method dicts for our fit."""
    from facerecon.methods import FitMethod

    r = MethodRows(FitMethod(model, fit_config, facerec), detections or Detections())
    single = {"fit": r.single}
    sets = {"fit: shape averaging": r.shape_average("fit"), "fit: joint fit": r.joint_neutral}
    multiview = {"fit: front view only": r.front_only, "fit: joint 3-view": r.joint_front}
    return single, sets, multiview, r


def net_methods(
    model, rnet, detections: Detections, refine_config=None, cnet=None, facerec=None
) -> tuple[dict, dict, dict, dict[str, MethodRows]]:
    """``(single, sets, multiview, rows by method)`` for a trained R-Net (and C-Net):
    ``rnet`` and ``auto`` (R-Net + ``refine_config``; ``facerec`` for its perceptual term) per
    image; their shape averaging and ``auto``'s joint refinement per set; with a C-Net the
    S1-S4 aggregations of the R-Net identities and ``auto`` started from S4."""
    from facerecon.methods import AutoMethod, FitMethod, RNetMethod

    rnet_rows = MethodRows(RNetMethod(model, rnet), detections)
    refiner = FitMethod(model, refine_config, facerec)
    auto_rows = MethodRows(AutoMethod(RNetMethod(model, rnet), refiner), detections)
    single = {"rnet": rnet_rows.single, "auto": auto_rows.single}
    sets: dict[str, SetMethod] = {
        "rnet: shape averaging": rnet_rows.shape_average("rnet"),
        "auto: shape averaging": auto_rows.shape_average("auto"),
        "auto: joint refine": auto_rows.joint_neutral,
    }
    if cnet is not None:
        for name in ("s1", "s2", "s3", "s4"):
            rows = MethodRows(RNetMethod(model, rnet, cnet, name), detections)
            sets[f"rnet + cnet: {name.upper()}"] = rows.joint_neutral
        auto_cnet = AutoMethod(RNetMethod(model, rnet, cnet, "s4"), refiner)
        sets["auto + cnet S4: joint refine"] = MethodRows(auto_cnet, detections).joint_neutral
    multiview = {"rnet: front view only": rnet_rows.front_only}
    return single, sets, multiview, {"rnet": rnet_rows, "auto": auto_rows}


def ablation_methods(model, fit_config, detections: Detections) -> dict[str, SingleMethod]:
    """Single-image rows in the layout of the paper's Table 1, on the fitting path (same
    stages and steps as ``fit_config``, perceptual term off, every term free to move the shape
    as in the paper): landmarks only; landmarks + photometric without skin attention;
    landmarks + photometric with it."""
    from facerecon.methods import FitMethod

    no_perc = dataclasses.replace(
        fit_config,
        coarse=dataclasses.replace(fit_config.coarse, perceptual=False, frozen=()),
        fine=dataclasses.replace(fit_config.fine, perceptual=False, frozen=()),
    )
    lm_only = dataclasses.replace(
        no_perc,
        coarse=dataclasses.replace(no_perc.coarse, iters=0),
        fine=dataclasses.replace(no_perc.fine, iters=0),
    )
    rows = {
        "fit ablation: landmarks only": (lm_only, True),
        "fit ablation: landmarks + photo, no skin attention": (no_perc, False),
        "fit ablation: landmarks + photo": (no_perc, True),
    }
    return {
        name: MethodRows(FitMethod(model, cfg), detections, skin_attention=skin).single
        for name, (cfg, skin) in rows.items()
    }


def mean_face_methods(model) -> tuple[dict, dict, dict]:
    """``(single, sets, multiview)`` for the baseline: bfm-lite with all coefficients 0."""
    zero = _neutral_from_id(model, np.zeros(model.layout.n_id))
    return (
        {"mean-face": lambda samples: [zero] * len(samples)},
        {"mean-face": lambda samples, singles: zero},
        {"mean-face": lambda triple: zero},
    )


def oracle_fit(
    model,
    gt_vertices: np.ndarray,
    gt_landmarks: np.ndarray,
    nose_index: int,
    config: SyntheticBenchmarkConfig,
) -> tuple[Prediction, list[float]]:
    """The reconstruction model's best identity for a GT shape: a diagnostic lower bound.

    Gauss-Newton on ``id_coeff``: evaluate (crop, ICP) -> linearise the point-to-plane
    residuals of the cropped GT vertices ``q`` to their closest predicted surface points in
    ``id_coeff`` (the similarity fixed) -> solve with a ridge ``oracle_reg * |id_coeff|^2``,
    keeping the 90 % smallest residuals; ``oracle_iterations`` rounds. Expression stays 0.
    Returns the prediction and the RMSE before each round (mm).
    """
    from facerecon.evaluate.geometry import SurfaceQuery

    mean = model.mean_shape.double().cpu().numpy()
    basis = model.id_basis.double().cpu().numpy()  # (N, 3, K)
    tri = model.triangles.cpu().numpy()
    lm = model.landmarks68.cpu().numpy()
    coeff = np.zeros(basis.shape[2])
    history: list[float] = []
    for _ in range(config.oracle_iterations):
        pv = mean + basis @ coeff
        res = evaluate_mesh(
            pv,
            tri,
            gt_vertices,
            None,
            gt_landmarks=gt_landmarks,
            pred_landmarks=pv[lm],
            nose_index=nose_index,
            crop_mm=config.crop_mm,
            icp_stages=benchmark_icp_stages(config.surface_iterations),
        )
        history.append(res.rmse_plane)
        sim, q = res.similarity, gt_vertices[res.gt_indices]
        query = SurfaceQuery(sim.apply(pv), tri)
        hit = query.closest(q)
        normal = query.normals_at(hit)
        local = np.einsum("mk,mkdj->mdj", hit.bary, basis[tri[hit.triangle]])
        jac = sim.scale * np.einsum("de,mej->mdj", sim.R, local)  # (M, 3, K)
        a = np.einsum("md,mdj->mj", normal, jac)
        b = np.einsum("md,md->m", normal, q - hit.point)
        keep = np.argsort(np.abs(b))[: int(0.9 * len(b))]
        lhs = a[keep].T @ a[keep] + config.oracle_reg * np.eye(len(coeff))
        coeff = coeff + np.linalg.solve(lhs, a[keep].T @ b[keep] - config.oracle_reg * coeff)
    return _neutral_from_id(model, coeff), history


def oracle_method(model, config: SyntheticBenchmarkConfig) -> SetMethod:
    """Set method: :func:`oracle_fit` to the identity's neutral GT (uses the GT: diagnostic)."""

    def run(samples: list, singles: dict) -> Prediction:
        s = samples[0]
        gv = np.asarray(s.vertices_neutral, np.float64)
        idx = np.asarray(s.landmark_indices, np.int64)
        pred, history = oracle_fit(model, gv, gv[idx], int(s.nose_index), config)
        pred.info["oracle_history"] = [round(h, 4) for h in history]
        return pred

    return run


def mediapipe_method() -> tuple[SingleMethod, Callable[[], None]]:
    """``(single method, close)`` for the MediaPipe Face Mesh peer on the full image."""
    from facerecon.evaluate.peers import MediapipeFaceMesh

    mesh = MediapipeFaceMesh()

    def run(samples: list) -> list[Prediction | None]:
        out: list[Prediction | None] = []
        for s in samples:
            p = mesh(s.image)
            out.append(None if p is None else Prediction(p.vertices, p.triangles, p.landmarks))
        return out

    return run, mesh.close


# ----------------------------------------------------------------------------------------------
# scoring and summaries


def score(
    pred: Prediction | None,
    gt_vertices: np.ndarray,
    gt_triangles: np.ndarray,
    gt_landmarks: np.ndarray,
    nose_index: int,
    config: SyntheticBenchmarkConfig,
    neutral: bool = False,
) -> dict:
    """Evaluate one prediction; ``{"rmse", "per_region", "failed", "reason"}`` (mm)."""
    if pred is None:
        return {"rmse": math.nan, "per_region": {}, "failed": True, "reason": "no face"}
    v = pred.neutral if neutral and pred.neutral is not None else pred.vertices
    lm = pred.neutral_landmarks if neutral and pred.neutral is not None else pred.landmarks
    try:
        res = evaluate_mesh(
            v,
            pred.triangles,
            gt_vertices,
            gt_triangles,
            gt_landmarks=gt_landmarks,
            pred_landmarks=lm,
            nose_index=nose_index,
            crop_mm=config.crop_mm,
            icp_stages=benchmark_icp_stages(config.surface_iterations),
        )
    except EvaluationError as exc:
        return {"rmse": math.nan, "per_region": {}, "failed": True, "reason": str(exc)}
    return {"rmse": res.rmse_plane, "per_region": dict(res.per_region), "failed": False}


def _mean_face_name(name: str) -> str:
    """The mean-face row a method row of a section compares with (the same yaw bin)."""
    cut = name.find(" |yaw| ")
    return "mean-face" + (name[cut:] if cut >= 0 else "")


def cases(section: str) -> str:
    """What one record of a summary section scores: ``"renders"``, ``"identities"`` (image
    sets) or ``"triples"`` (multi-view)."""
    return {"sets": "identities", "multiview": "triples"}.get(section, "renders")


def _render_key(record: dict) -> tuple | None:
    """``(identity, condition)`` of a record, None where it does not say."""
    if "identity" not in record or "condition" not in record:
        return None
    return record["identity"], record["condition"]


def summarize(records: Sequence[dict]) -> dict[str, dict[str, dict]]:
    """Per section and method: mean, std, median of ``rmse`` over the successful records,
    ``n`` (successes), ``failures`` and the per-region mean RMSE.

    A method that missed renders (no face found) is averaged over fewer renders than the
    mean face, which never fails: ``mean_face_same`` is the mean face's mean RMSE on the
    renders the method did reconstruct (same identity and condition) and ``vs_mean_face``
    the method's mean over it, the paired comparison :func:`sanity_notes` uses."""
    out: dict[str, dict[str, dict]] = {}
    for sec in SECTIONS:
        names = list(dict.fromkeys(r["method"] for r in records if r["section"] == sec))
        base: dict[str, dict[tuple, float]] = {}  # mean-face row -> render -> rmse
        for r in records:
            key = _render_key(r)
            if (r["section"] == sec and r["method"].startswith("mean-face")
                    and not r["failed"] and key is not None):  # fmt: skip
                base.setdefault(r["method"], {})[key] = r["rmse"]
        for name in names:
            rows = [r for r in records if r["section"] == sec and r["method"] == name]
            ok = [r for r in rows if not r["failed"]]
            vals = np.array([r["rmse"] for r in ok], dtype=np.float64)
            regions = {
                k: float(np.mean([r["per_region"][k] for r in ok if k in r["per_region"]]))
                for k in REGIONS
                if any(k in r["per_region"] for r in ok)
            }
            out.setdefault(sec, {})[name] = {
                "mean": float(vals.mean()) if len(vals) else math.nan,
                "std": float(vals.std()) if len(vals) else math.nan,
                "median": float(np.median(vals)) if len(vals) else math.nan,
                "n": len(ok),
                "failures": len(rows) - len(ok),
                "per_region": regions,
            }
            found = Counter(r["detector"] for r in rows if r.get("detector"))
            if found:
                out[sec][name]["detected_by"] = dict(found)
            same = base.get(_mean_face_name(name), {})
            pairs = [(r["rmse"], same[k]) for r in ok if (k := _render_key(r)) in same]
            if not name.startswith("mean-face") and pairs:
                mean_same = float(np.mean([b for _, b in pairs]))
                out[sec][name]["mean_face_same"] = mean_same
                out[sec][name]["vs_mean_face"] = float(np.mean([a for a, _ in pairs])) / mean_same
                out[sec][name]["n_paired"] = len(pairs)
    return out


def _gt(sample, neutral: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(vertices, triangles, landmarks)`` of a sample's ground truth: its triangles
    restricted to the surface a scanner captures (:func:`scanned_triangles` of the neutral
    shape, so posed and neutral truth are scored on the same points; vertices of no kept
    triangle are not scored)."""
    v = np.asarray(sample.vertices_neutral if neutral else sample.vertices_model, np.float64)
    idx = np.asarray(sample.landmark_indices, dtype=np.int64)
    tri = np.asarray(sample.triangles, dtype=np.int64)
    seen = scanned_triangles(np.asarray(sample.vertices_neutral, np.float64), tri)
    return v, tri[seen], v[idx]


def _record(
    section: str, method: str, sample, result: dict, pred: Prediction | None = None, **extra
) -> dict:
    rec = {
        "section": section,
        "method": method,
        "identity": int(sample.identity),
        "condition": int(sample.condition),
    }
    rec.update(result)
    rec.update(extra)
    if pred is not None:
        rec.update(pred.info)
    return rec


def _pose_deg(sample) -> dict[str, float]:
    """``{"pitch", "yaw", "roll"}`` in degrees from the sample's ``coeffs["angles"]``."""
    angles = (getattr(sample, "coeffs", {}) or {}).get("angles")
    if angles is None or len(angles) != 3:
        return {}
    return dict(
        zip(("pitch", "yaw", "roll"), np.rad2deg(np.asarray(angles, float)).tolist(), strict=True)
    )


def _yaw_bin(yaw: float | None, edges: Sequence[float]) -> str | None:
    """``"|yaw| 15-30"`` for a yaw in degrees and ascending bin edges (the first bin starts
    at 0)."""
    if yaw is None:
        return None
    lo = 0.0
    for hi in edges:
        if abs(yaw) <= hi:
            return f"|yaw| {lo:g}-{hi:g}"
        lo = hi
    return f"|yaw| >{lo:g}"


def evaluate_identity(
    samples: list,
    single: dict[str, SingleMethod],
    sets: dict[str, SetMethod],
    config: SyntheticBenchmarkConfig,
) -> list[dict]:
    """Records of one identity's images: single-image and image-set sections."""
    records: list[dict] = []
    preds: dict[str, list[Prediction | None]] = {}
    for name, method in single.items():
        preds[name] = method(samples)
        for s, p in zip(samples, preds[name], strict=True):
            pose = _pose_deg(s)
            yaw_bin = _yaw_bin(pose.get("yaw"), config.yaw_bins)
            for neutral in (False, True):
                gv, gf, glm = _gt(s, neutral=neutral)
                res = score(p, gv, gf, glm, s.nose_index, config, neutral=neutral)
                tag = "_neutral" if neutral else ""
                records.append(_record("single" + tag, name, s, res, p, **pose))
                if yaw_bin is not None:
                    records.append(_record("by_yaw" + tag, f"{name} {yaw_bin}", s, res, p, **pose))
    s0 = samples[0]
    gv, gf, glm = _gt(s0, neutral=True)
    if "fit" in preds:
        per_image = [r["rmse"] for r in records if r["method"] == "fit" and not r["failed"]]
        res = {
            "rmse": float(np.mean(per_image)) if per_image else math.nan,
            "per_region": {},
            "failed": not per_image,
        }
        records.append(
            _record("sets", "fit: single image (mean per identity, vs posed GT)", s0, res)
        )
        neutral = [score(p, gv, gf, glm, s0.nose_index, config, True) for p in preds["fit"]]
        ok = [r["rmse"] for r in neutral if not r["failed"]]
        res = {"rmse": float(np.mean(ok)) if ok else math.nan, "per_region": {}, "failed": not ok}
        records.append(_record("sets", "fit: single image identity, exp 0", s0, res))
    for name, method in sets.items():
        pred = method(samples, preds)
        res = score(pred, gv, gf, glm, s0.nose_index, config)
        records.append(_record("sets", name, s0, res, pred, views=len(samples)))
    return records


def evaluate_triple(
    triple: list, multiview: dict[str, MultiviewMethod], config: SyntheticBenchmarkConfig
) -> list[dict]:
    """Records of one 3-view triple: each method's frontal mesh vs the frontal GT."""
    front = triple[len(triple) // 2]
    gv, gf, glm = _gt(front, neutral=False)
    return [
        _record("multiview", name, front, score(m(triple), gv, gf, glm, front.nose_index, config))
        for name, m in multiview.items()
    ]


def _skipped(message: str, config: SyntheticBenchmarkConfig) -> dict:
    return {"skipped": message, "config": asdict(config), "summary": {}, "records": []}


def run_synthetic_benchmark(
    config: SyntheticBenchmarkConfig | None = None,
    single: dict[str, SingleMethod] | None = None,
    sets: dict[str, SetMethod] | None = None,
    multiview: dict[str, MultiviewMethod] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Run ``synthetic-ict`` (module docstring); extra methods are added to the built-ins
    named in ``config.methods``.

    Returns ``{"config", "synth", "sizes", "summary": {section: {method: stats}}, "records",
    "seconds", "seconds_per_fit", "notes"}``, or ``{"skipped": message, ...}`` when the ICT
    model (or the synthetic engine) is not available.
    """
    from facerecon.errors import FaceReconError
    from facerecon.morphable import load_face_model

    config = config or SyntheticBenchmarkConfig()
    say = progress or (lambda msg: None)
    try:
        from facerecon.data.synthetic import SyntheticFaces
    except ImportError as exc:
        return _skipped(f"facerecon.data.synthetic not available: {exc}", config)
    try:
        gt_model = load_face_model(config.gt_model)
    except (FaceReconError, OSError) as exc:
        return _skipped(f"ICT model not available ({config.gt_model}): {exc}", config)
    t_start = time.perf_counter()
    n_id, n_cond, n_tri = config.sizes()
    synth = config.synth_config()
    engine = SyntheticFaces(gt_model, synth, seed=config.seed)
    import torch

    device = torch.device(config.device)
    model = load_face_model(config.model, device=device)

    all_single: dict[str, SingleMethod] = {}
    all_sets: dict[str, SetMethod] = {}
    all_multi: dict[str, MultiviewMethod] = {}
    closers: list[Callable[[], None]] = []
    from facerecon.detect import detector_for
    from facerecon.fit import FitConfig

    fast = config.fast_fit or config.quick
    detections = Detections([detector_for(name) for name in config.detectors])
    facerec = None
    if not fast and ("fit" in config.methods or config.rnet):
        from facerecon.nets.facerec import embed, load_facerec

        facerec = functools.partial(embed, load_facerec(device=device))
    fit_rows, net_rows = None, {}
    if "fit" in config.methods:
        fit_config = FitConfig.fast() if fast else FitConfig()
        s1, s2, s3, fit_rows = fit_methods(model, fit_config, facerec, detections)
        all_single.update(s1)
        all_sets.update(s2)
        all_multi.update(s3)
        if config.ablation:
            all_single.update(ablation_methods(model, fit_config, detections))
    if config.rnet:
        from facerecon.methods.base import load_rnet_checked
        from facerecon.nets.cnet import load_cnet

        refine = FitConfig.refine()  # no 224 px stage, quick or not
        cnet = load_cnet(config.cnet, device=device) if config.cnet else None
        rnet = load_rnet_checked(config.rnet, model, device, "rnet")
        s1, s2, s3, net_rows = net_methods(model, rnet, detections, refine, cnet, facerec)
        all_single.update(s1)
        all_sets.update(s2)
        all_multi.update(s3)
    if config.true_landmarks and "fit" in config.methods:
        rnet_net = rnet if config.rnet else None
        refine_cfg = refine if config.rnet else None
        all_single.update(true_landmark_methods(model, fit_config, refine_cfg, rnet_net, facerec))
    if "mean-face" in config.methods:
        s1, s2, s3 = mean_face_methods(model)
        all_single.update(s1)
        all_sets.update(s2)
        all_multi.update(s3)
    if "oracle" in config.methods:
        all_sets["bfm-lite 3D oracle (fitted to the GT)"] = oracle_method(model, config)
    if "mediapipe" in config.methods:
        mp_run, mp_close = mediapipe_method()
        all_single["mediapipe"] = mp_run
        closers.append(mp_close)
    all_single.update(single or {})
    all_sets.update(sets or {})
    all_multi.update(multiview or {})

    records: list[dict] = []
    try:
        for i in range(n_id):
            detections.clear()
            samples = [engine.sample(i, c) for c in range(n_cond)]
            records += evaluate_identity(samples, all_single, all_sets, config)
            if i < n_tri and all_multi:
                triple = engine.triple(i, yaws_deg=tuple(config.triple_yaws_deg))
                records += evaluate_triple(triple, all_multi, config)
            done = [r for r in records if r["section"] == "single" and r["method"] == "fit"]
            fit_ok = [r["rmse"] for r in done if not r["failed"]]
            say(
                f"identity {i + 1}/{n_id}: fit mean {np.mean(fit_ok) if fit_ok else math.nan:.3f}"
                f" mm over {len(fit_ok)} images, {time.perf_counter() - t_start:.0f} s"
            )
    finally:
        for close in closers:
            close()
    summary = summarize(records)
    return {
        "config": asdict(config),
        "synth": asdict(synth) if hasattr(synth, "__dataclass_fields__") else {},
        "sizes": {"identities": n_id, "conditions": n_cond, "triples": n_tri},
        "summary": summary,
        "records": records,
        "seconds": time.perf_counter() - t_start,
        "seconds_per_fit": fit_rows.seconds / fit_rows.images
        if fit_rows and fit_rows.images
        else math.nan,
        "seconds_per_image": {k: r.seconds / r.images for k, r in net_rows.items() if r.images},
        "notes": sanity_notes(summary),
    }


def sanity_notes(summary: dict[str, dict[str, dict]]) -> list[str]:
    """Plain statements where a method fails to beat the mean-face baseline on the renders
    it reconstructed (``mean_face_same`` of :func:`summarize`; the mean face's mean over
    every render where a summary has no pairing)."""
    notes = []
    for sec, methods in summary.items():
        for name, stats in methods.items():
            base = methods.get(_mean_face_name(name))
            if base is None or name.startswith("mean-face") or not math.isfinite(stats["mean"]):
                continue
            same = stats.get("mean_face_same")
            ref = base["mean"] if same is None else same
            if stats["mean"] >= ref:
                where = "" if same is None else f" on the same {stats['n_paired']} {cases(sec)}"
                notes.append(
                    f"{sec}: {name} ({stats['mean']:.3f} mm) does not beat the mean face "
                    f"({ref:.3f} mm{where})"
                )
    return notes

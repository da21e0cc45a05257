"""Multi-view benchmark: synthetic view triples with known shape, 1, 2 or 3 views per method.

Protocol (``benchmarks/bench_multiview.py`` runs it for bfm-lite and ICT ground truth and yaw
spreads of 30 and 60 degrees): triple ``i`` of a :class:`facerecon.data.synthetic.SyntheticFaces`
engine at yaws ``(-s, 0, +s)`` (shared identity, expression, camera and light; photo-detail albedo),
each view detected with the product's chain and aligned like a photo
(:class:`facerecon.evaluate.benchmark.Detections`). View subsets: 1 = the front view, 2 = the
front and one side (left for even triples, right for odd), 3 = all. Every method gets the
detected views of a subset and its front view's mesh is scored against the truth with the
benchmark's ICP protocol (posed shape, and the neutral shape against the neutral truth).

Rows (``methods`` names): ``mean-face`` (no image), ``front-only`` (the single-image default
on the front view: the same for every subset), ``set-fit`` (``--set``: one identity, per-view
expression), ``mvfit``, ``mvr`` and ``mvr-auto`` (:mod:`facerecon.methods.multiview`). With
``true_landmarks`` a diagnostic row, ``mvfit: true landmarks``: the same joint fit of every view
of the subset aligned and fitted on the renders' *true* 68 landmarks
(:class:`facerecon.evaluate.benchmark.TrueLandmarks`, the model's fixed vertices, no silhouette
contour): what the multi-view fit would recover if its landmarks had no detector error. Never a
product path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from facerecon.detect.faces import VIEWS_DETECTOR
from facerecon.evaluate.benchmark import (
    Detections,
    SyntheticBenchmarkConfig,
    TrueLandmarks,
    _gt,
    _model_mesh,
    score,
)

__all__ = ["TRUE_MVFIT", "MultiviewBenchmarkConfig", "run_multiview_benchmark", "view_subsets"]

#: the diagnostic row of ``MultiviewBenchmarkConfig.true_landmarks`` (module docstring)
TRUE_MVFIT = "mvfit: true landmarks"


@dataclass
class MultiviewBenchmarkConfig:
    """What one multi-view run measures (module docstring).

    Attributes:
        gt_model: the ground-truth model (name or ``.npz``); model: the one we reconstruct with.
        spreads_deg: side-view yaws (one run of triples per spread).
        n_triples: triples per spread; seed: the engine's (2026: held out).
        views: subset sizes to run.
        methods: rows (module docstring); ``front_method``: the single-image default.
        fast: ``FitConfig.fast()``-like fits everywhere (tests / quick runs).
        albedo, texture_dir: the renders' albedo (``SynthConfig``).
        mvr_weights: DF-MVR weights (None: the shipped ones; rows ``mvr*`` are skipped
            without).
        rnet_weights: R-Net for the ``front-only`` row when ``front_method`` is ``auto``.
        true_landmarks: add the diagnostic row :data:`TRUE_MVFIT` (every view of a subset
            aligned on its true landmarks, so none is missed).
    """

    gt_model: str = "bfm-lite"
    model: str = "bfm-lite"
    spreads_deg: tuple[float, ...] = (30.0, 60.0)
    n_triples: int = 4
    seed: int = 2026
    views: tuple[int, ...] = (1, 2, 3)
    methods: tuple[str, ...] = ("mean-face", "front-only", "set-fit", "mvfit", "mvr", "mvr-auto")
    front_method: str = "auto"
    fast: bool = False
    albedo: str = "photo-detail"
    texture_dir: str | None = None
    mvr_weights: str | None = None
    rnet_weights: str | None = None
    detectors: tuple[str, ...] = (VIEWS_DETECTOR,)  # the product's default for --views
    true_landmarks: bool = False


def view_subsets(triple: list, index: int, sizes=(1, 2, 3)) -> dict[int, list[int]]:
    """Which views of a (left, front, right) triple each subset size uses (module docstring)."""
    side = 0 if index % 2 == 0 else 2
    table = {1: [1], 2: sorted([1, side]), 3: [0, 1, 2]}
    return {k: table[k] for k in sizes}


def _methods(cfg: MultiviewBenchmarkConfig, model) -> dict[str, Callable]:
    """name -> ``method(target) -> coeffs`` for the rows that can be built."""
    import dataclasses

    from facerecon.errors import FaceReconError
    from facerecon.fit import FitConfig
    from facerecon.methods import MethodSpec, build_method
    from facerecon.methods.fit import FitMethod, embedder_for
    from facerecon.nets.shipped import shipped_weights

    spec = MethodSpec(
        weights=cfg.rnet_weights or shipped_weights("rnet", model.name),
        mvr_weights=cfg.mvr_weights,
        fast=cfg.fast,
        perceptual=not cfg.fast,
    )
    out: dict[str, Callable] = {}
    for name in cfg.methods:
        if name == "mean-face":
            continue
        if name == "front-only":
            m = build_method(cfg.front_method, spec, model)
            out[name] = lambda t, m=m: m(t, False).coeffs
        elif name == "set-fit":
            fcfg = FitConfig.fast() if cfg.fast else FitConfig.two_stage()
            m = FitMethod(model, fcfg, embedder_for(fcfg, spec))
            out[name] = lambda t, m=m: m(t, True).coeffs
        elif name in ("mvr", "mvr-auto"):
            try:
                m = build_method(name, spec, model)
            except FaceReconError:  # no weights: the row is skipped (said in the result)
                continue
            if cfg.fast and name == "mvr-auto":
                ref = m.refiner.fitter
                ref.config = dataclasses.replace(
                    ref.config, fine=dataclasses.replace(ref.config.fine, iters=0)
                )
            out[name] = lambda t, m=m: m(t).coeffs
        else:
            m = build_method(name, spec, model)
            out[name] = lambda t, m=m: m(t).coeffs
    if cfg.true_landmarks:
        from facerecon.methods.multiview import MultiViewFitMethod

        fcfg = FitConfig.fast() if cfg.fast else FitConfig.two_stage()
        fcfg = dataclasses.replace(fcfg, contour_landmarks=False)
        m = MultiViewFitMethod(model, fcfg, embedder_for(fcfg, spec))
        out[TRUE_MVFIT] = lambda t, m=m: m(t).coeffs
    return out


def run_multiview_benchmark(
    cfg: MultiviewBenchmarkConfig, progress: Callable[[str], None] | None = None
) -> dict:
    """Run the protocol; ``{"config", "records", "summary": {spread: {views: {method:
    stats}}}, "seconds", "seconds_per_call": {method: s}, "skipped": [rows]}``.

    Records: ``spread, views, method, identity, rmse, rmse_neutral, failed, n_views_found``.
    """
    import torch

    from facerecon.data.synthetic import SynthConfig, SyntheticFaces
    from facerecon.detect import detector_for
    from facerecon.methods import crops_target
    from facerecon.morphable import load_face_model

    say = progress or (lambda msg: None)
    t_start = time.perf_counter()
    gt = load_face_model(cfg.gt_model)
    model = load_face_model(cfg.model)
    engine = SyntheticFaces(
        gt, SynthConfig(albedo=cfg.albedo, texture_dir=cfg.texture_dir), seed=cfg.seed
    )
    rows = _methods(cfg, model)
    skipped = [m for m in cfg.methods if m != "mean-face" and m not in rows]
    det = Detections([detector_for(n) for n in cfg.detectors])
    truth = TrueLandmarks()
    bcfg = SyntheticBenchmarkConfig()
    mean_pred = _model_mesh(model, torch.zeros(1, model.layout.size))[0]
    records: list[dict] = []
    timing: dict[str, list[float]] = {}
    for spread in cfg.spreads_deg:
        for i in range(cfg.n_triples):
            det.clear()
            truth.clear()
            triple = engine.triple(i, yaws_deg=(-spread, 0.0, spread))
            front = triple[1]
            front_cache: dict = {}  # the front-only row is the same for every subset
            gv, gf, glm = _gt(front, neutral=False)
            nv, nf, nlm = _gt(front, neutral=True)
            for k, idx in view_subsets(triple, i, cfg.views).items():
                views = [triple[j] for j in idx]
                found = [v for v in views if det.aligned(v) is not None]
                base = {"spread": spread, "views": k, "identity": i, "n_views_found": len(found)}
                # the front view is scored: without it the row fails
                if "mean-face" in cfg.methods:
                    s = score(mean_pred, gv, gf, glm, front.nose_index, bcfg)
                    sn = score(mean_pred, nv, nf, nlm, front.nose_index, bcfg, neutral=True)
                    records.append({**base, "method": "mean-face", "rmse": s["rmse"],
                                    "rmse_neutral": sn["rmse"], "failed": False})  # fmt: skip
                front_found = det.aligned(front) is not None
                for name, run in rows.items():
                    src = truth if name == TRUE_MVFIT else det
                    use = [front] if name == "front-only" else found
                    if name == TRUE_MVFIT:
                        use = views
                    elif not use or not front_found:
                        records.append({**base, "method": name, "rmse": math.nan,
                                        "rmse_neutral": math.nan, "failed": True})  # fmt: skip
                        continue
                    faces = [src.aligned(v) for v in use]
                    target = crops_target(
                        faces,
                        model.mean_shape,
                        tuple(src.detector_of(v) for v in use),
                        [src.alt_of(v) for v in use],
                    )
                    if name == "front-only" and "coeffs" in front_cache:
                        coeffs = front_cache["coeffs"]
                    else:
                        t0 = time.perf_counter()
                        coeffs = run(target)
                        timing.setdefault(name, []).append(time.perf_counter() - t0)
                        if name == "front-only":
                            front_cache["coeffs"] = coeffs
                    pred = _model_mesh(model, coeffs)[
                        next(j for j, v in enumerate(use) if v is front)
                    ]
                    s = score(pred, gv, gf, glm, front.nose_index, bcfg)
                    sn = score(pred, nv, nf, nlm, front.nose_index, bcfg, neutral=True)
                    records.append({**base, "method": name, "rmse": s["rmse"],
                                    "rmse_neutral": sn["rmse"], "failed": s["failed"]})  # fmt: skip
            say(f"spread {spread:g}: triple {i + 1}/{cfg.n_triples}, "
                f"{time.perf_counter() - t_start:.0f} s")  # fmt: skip
    return {
        "config": asdict(cfg),
        "records": records,
        "summary": summarize(records),
        "seconds": time.perf_counter() - t_start,
        "seconds_per_call": {k: float(np.mean(v)) for k, v in timing.items()},
        "skipped": skipped,
    }


def summarize(records: list[dict]) -> dict:
    """``{spread: {views: {method: {"rmse", "rmse_neutral", "n", "failures"}}}}`` (means over
    the triples where the method produced a mesh)."""
    out: dict = {}
    for r in records:
        cell = out.setdefault(r["spread"], {}).setdefault(r["views"], {})
        m = cell.setdefault(r["method"], {"rmse": [], "rmse_neutral": [], "failures": 0})
        if r["failed"] or not math.isfinite(r["rmse"]):
            m["failures"] += 1
        else:
            m["rmse"].append(r["rmse"])
            m["rmse_neutral"].append(r["rmse_neutral"])
    for by_views in out.values():
        for cell in by_views.values():
            for m in cell.values():
                m["n"] = len(m["rmse"])
                m["rmse"] = float(np.mean(m["rmse"])) if m["rmse"] else math.nan
                m["rmse_neutral"] = (
                    float(np.mean(m["rmse_neutral"])) if m["rmse_neutral"] else math.nan
                )
    return out

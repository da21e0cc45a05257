"""Analysis-by-synthesis: fit 3DMM coefficients to aligned photos with the hybrid loss.

Inputs are the products of ``facerecon.detect.align``: 224x224 crops, their 68 landmarks
and (computed here unless given) skin attention. The result is a full coefficient vector per
image in the layout of ``facerecon.morphable.layout`` plus the loss history.

Stages (see :class:`FitConfig`): landmarks only (pose, identity, expression), then the hybrid
loss coarse (reduced render size) to fine (224, with the perceptual term). Fitting draws no
random numbers (and leaves the caller's generators alone): the same inputs give the same
result on a given device and thread count.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from facerecon.fit.adam import Adam
from facerecon.fit.config import SHAPE, FitConfig, StageConfig
from facerecon.fit.contour import contour_candidates
from facerecon.fit.landmarks import (
    LandmarkPoints,
    LandmarkSpec,
    agreement_weights,
    calibration_key,
    landmark_spec,
    project_landmarks,
    spec_candidates,
    spec_landmarks,
)
from facerecon.losses import (
    albedo_flatness_loss,
    coefficient_regularization,
    hybrid_loss,
    landmark_loss,
    lighting_regularization,
    perceptual_loss,
    photometric_loss,
    temporal_smoothness,
)
from facerecon.memo import TensorMemo
from facerecon.morphable import MorphableModel
from facerecon.morphable.decimate import coarse_model
from facerecon.render import CameraConfig, project, render, transform

Embedder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: noise (224-crop pixels) of a landmark whose "sigma" weight is 1
SIGMA_REF_PX = 2.0


@dataclass
class FitTarget:
    """What a fit is matched against.

    Attributes:
        image: ``(B, 3, S, S)`` aligned crops, RGB in 0..1 (S = camera size, 224).
        lm68: ``(B, 68, 2)`` detected landmarks in crop pixels.
        attention: ``(B, 1, S, S)`` skin attention A, or None to compute it from ``image``.
        lm_valid: ``(B, 68)`` optional landmark confidences (0 drops a point).
        detector: the detector the landmarks came from (``facerecon.detect.Face.detector``,
            e.g. ``"dlib hog"``), one for the batch or one per image; with
            ``FitConfig.landmark_detector="auto"`` each image's landmarks are fitted with
            that detector's calibrated definition.
        more_lm68: further detections of the same faces, ``((detector, (B, 68, 2)), ...)``,
            NaN rows where that detector found nothing; each adds its own landmark term (with
            its own calibration: independent errors average out).
    """

    image: torch.Tensor
    lm68: torch.Tensor
    attention: torch.Tensor | None = None
    lm_valid: torch.Tensor | None = None
    detector: str | tuple[str | None, ...] | None = None
    more_lm68: tuple[tuple[str, torch.Tensor], ...] = ()

    def detectors(self) -> tuple[str | None, ...]:
        """``detector`` per image (one name, or None, stands for every image)."""
        if self.detector is None or isinstance(self.detector, str):
            return (self.detector,) * self.lm68.shape[0]
        return tuple(self.detector)


@dataclass
class FitResult:
    """Fitted coefficients ``(B, layout.size)`` and per-stage loss history."""

    coeffs: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    def final_losses(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


class Params(torch.nn.Module):
    """The optimised coefficients of a batch; identity (and expression) optionally shared
    across the batch."""

    def __init__(
        self,
        model: MorphableModel,
        batch: int,
        shared_identity: bool,
        like: torch.Tensor,
        shared_expression: bool = False,
    ):
        super().__init__()
        kw = {"device": like.device, "dtype": like.dtype}
        layout = model.layout
        self.batch = batch
        self.id_coeff = torch.nn.Parameter(
            torch.zeros(1 if shared_identity else batch, layout.n_id, **kw)
        )
        self.exp_shared = torch.nn.Parameter(
            torch.zeros(1 if shared_expression else batch, layout.n_exp, **kw)
        )
        self.tex_coeff = torch.nn.Parameter(torch.zeros(batch, layout.n_tex, **kw))
        self.angles = torch.nn.Parameter(torch.zeros(batch, 3, **kw))
        self.gamma = torch.nn.Parameter(torch.zeros(batch, 27, **kw))
        self.trans = torch.nn.Parameter(torch.zeros(batch, 3, **kw))
        # centre of the identity / expression prior when FitConfig.prior_centre == "init"
        self.id_prior = torch.zeros_like(self.id_coeff.detach())
        self.exp_prior = torch.zeros_like(self.exp_shared.detach())

    def load(self, model: MorphableModel, coeffs: torch.Tensor) -> None:
        """Start from given coefficients ``(B, layout.size)`` (e.g. an R-Net estimate); a shared
        identity starts at their mean."""
        parts = model.layout.split(coeffs.detach().to(self.angles))
        with torch.no_grad():
            for param, key in ((self.id_coeff, "id_coeff"), (self.exp_shared, "exp_coeff")):
                v = parts[key]
                param.copy_(v.mean(0, keepdim=True) if param.shape[0] == 1 else v)
            self.id_prior = self.id_coeff.detach().clone()
            self.exp_prior = self.exp_shared.detach().clone()
            for name in ("tex_coeff", "angles", "gamma", "trans"):
                getattr(self, name).copy_(parts[name])

    def ids(self) -> torch.Tensor:
        """``(B, n_id)`` identity, expanded when shared."""
        return self.id_coeff.expand(self.batch, -1)

    @property
    def exp_coeff(self) -> torch.Tensor:
        """``(B, n_exp)`` expression, expanded when shared."""
        return self.exp_shared.expand(self.batch, -1)

    def as_vector(self, model: MorphableModel) -> torch.Tensor:
        parts = {
            "id_coeff": self.ids(),
            "exp_coeff": self.exp_coeff,
            "tex_coeff": self.tex_coeff,
            "angles": self.angles,
            "gamma": self.gamma,
            "trans": self.trans,
        }
        return model.layout.join({k: v.detach() for k, v in parts.items()})


def landmark_vertices(
    model: MorphableModel,
    id_coeff: torch.Tensor,
    exp_coeff: torch.Tensor,
    indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """Shape at a few vertices only: ``(B, *indices.shape, 3)`` mm (cheap: rows of the bases).

    ``indices`` defaults to the 68 landmark vertices.
    """
    return model.shape_at(id_coeff, exp_coeff, indices)


_TABLES = TensorMemo()


def landmark_table(model: MorphableModel, contour: bool = True) -> torch.Tensor:
    """``(68, K)`` candidate vertices per landmark; K = 1 (fixed landmarks) without contour.
    The contour table is kept (11 ms to make; every face written asks for it) while the
    model's mean shape and landmark vertices are the same tensors, unchanged."""
    if not contour:
        return model.landmarks68[:, None]
    mean, lm = model.mean_shape, model.landmarks68
    return _TABLES.get((mean, lm), lambda: contour_candidates(mean, lm))


def fitted_landmarks(
    model: MorphableModel,
    vertices: torch.Tensor,
    angles: torch.Tensor,
    trans: torch.Tensor,
    camera: CameraConfig,
    contour: bool = True,
) -> torch.Tensor:
    """The 68 landmarks of a reconstruction in image pixels ``(B, 68, 2)``; jaw points follow
    the silhouette when ``contour``. ``vertices (B, N, 3)`` mm model space."""
    table = landmark_table(model, contour)
    return project_landmarks(vertices[:, table], angles, trans, camera)


def project_points(
    points_mm: torch.Tensor, angles: torch.Tensor, trans: torch.Tensor, camera: CameraConfig
) -> torch.Tensor:
    """Model-space points ``(B, K, 3)`` mm to image pixels ``(B, K, 2)``."""
    uv, _ = project(transform(points_mm, angles, trans, camera), camera)
    return uv


def _cosine_lr(opt: Adam, base: list[float], step: int, total: int, floor: float):
    t = step / max(total - 1, 1)
    f = floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    for group, lr in zip(opt.param_groups, base, strict=True):
        group["lr"] = lr * f


def _optimizer(params: Params, cfg: FitConfig, names: tuple[str, ...]) -> Adam:
    lrs = {
        "angles": cfg.lr_angles,
        "trans": cfg.lr_trans,
        "id_coeff": cfg.lr_id,
        "exp_coeff": cfg.lr_exp,
        "tex_coeff": cfg.lr_tex,
        "gamma": cfg.lr_gamma,
    }
    leaf = {"exp_coeff": "exp_shared"}  # the parameter behind an expanded view
    groups = [{"params": [getattr(params, leaf.get(n, n))], "lr": lrs[n]} for n in names]
    return Adam(groups)  # torch.optim.Adam's update, without its 1.2 s first use (fit.adam)


def fit_landmarks(
    model: MorphableModel,
    params: Params,
    target: FitTarget,
    camera: CameraConfig,
    cfg: FitConfig,
    history: list[dict[str, float]],
    observations: list[LandmarkObservation],
) -> None:
    """Stage 0: pose first, then pose + identity + expression, on the 68 landmarks."""
    weights = cfg.loss
    n = cfg.landmark_iters
    points = LandmarkPoints(model, [obs.spec for obs in observations])
    plan = (
        (("angles", "trans"), n // 3),
        (("angles", "trans", "id_coeff", "exp_coeff"), n - n // 3),
    )
    for names, iters in plan:
        opt = _optimizer(params, cfg, names)
        base = [g["lr"] for g in opt.param_groups]
        for step in range(iters):
            _cosine_lr(opt, base, step, iters, cfg.lr_decay)
            opt.zero_grad(set_to_none=True)
            lms = points(params.ids(), params.exp_coeff, params.angles, params.trans, camera)
            landmark = _summed_landmark_terms(lms, observations, cfg, params.angles)
            terms = {
                "landmark": landmark,
                "coef": prior_term(params, cfg),
            }
            _add_temporal(terms, params, cfg)
            total, parts = hybrid_loss(terms, weights)
            total.backward()
            opt.step()
        history.append({"stage": "landmarks", "total": float(total.detach()), **_floats(parts)})


@dataclass
class LandmarkObservation:
    """One detector's landmarks of the batch: its spec, ``lm68 (B, 68, 2)`` and ``valid``."""

    spec: LandmarkSpec
    lm68: torch.Tensor
    valid: torch.Tensor | None = None


def landmark_observations(
    model: MorphableModel, target: FitTarget, cfg: FitConfig
) -> list[LandmarkObservation]:
    """The target's landmark sets: ``target.lm68`` (first) and ``target.more_lm68``, each
    with the spec of its detector (``cfg.landmark_detector``; ``"auto"``: the detector's
    calibration)."""

    def spec_for(detector: str | None) -> LandmarkSpec:
        name = cfg.landmark_detector
        if name == "auto":
            name = calibration_key(detector)
        return landmark_spec(model, name, cfg.contour_landmarks)

    per_image = target.detectors()
    out = []
    for name in dict.fromkeys(per_image):  # one observation per detector, on its images
        rows = torch.tensor([d == name for d in per_image], device=target.lm68.device)
        valid = rows[:, None].to(target.lm68).expand(-1, 68)
        if target.lm_valid is not None:
            valid = valid * target.lm_valid.to(valid)
        out.append(LandmarkObservation(spec_for(name), target.lm68, valid))
    if len(out) == 1 and target.lm_valid is None:
        out[0].valid = None  # one detector for all: the plain term
    for detector, lm in target.more_lm68:
        found = torch.isfinite(lm).all(dim=-1)  # (B, 68)
        out.append(LandmarkObservation(spec_for(detector), torch.nan_to_num(lm), found.to(lm)))
    return out


def _landmarks_and_term(
    observations: list[LandmarkObservation],
    points_at,
    params: Params,
    cfg: FitConfig,
    camera: CameraConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lm (B, 68, 2) of the first observation's spec, the summed landmark term)``."""
    lms = [
        project_landmarks(spec_candidates(obs.spec, points_at), params.angles, params.trans, camera)
        for obs in observations
    ]
    return lms[0], _summed_landmark_terms(lms, observations, cfg, params.angles)


def _summed_landmark_terms(
    lms: list[torch.Tensor],
    observations: list[LandmarkObservation],
    cfg: FitConfig,
    angles: torch.Tensor,
) -> torch.Tensor:
    """The landmark terms of each observation's landmarks ``lms[i] (B, 68, 2)``, summed."""
    total = None
    for lm, obs in zip(lms, observations, strict=True):
        term = _landmark_term(lm, obs, cfg, angles)
        total = term if total is None else total + term
    return total


def _landmark_term(
    lm: torch.Tensor, obs: LandmarkObservation, cfg: FitConfig, angles: torch.Tensor
) -> torch.Tensor:
    """The landmark term of ``lm (B, 68, 2)``: the paper's weights, or with
    ``cfg.landmark_weighting == "sigma"`` and a calibrated spec ``(sigma_ref / sigma_k)^2``
    (a Gaussian noise model in 224-crop pixels, at the current yaw ``angles[:, 1]``, which
    carries no gradient through the weights; ``cfg.landmark_sigma_max_yaw`` caps that yaw,
    ``cfg.landmark_sigma_growth`` raises it past the calibration's end bins);
    Cauchy-robust beyond ``cfg.landmark_robust``
    (times each point's sigma; crop pixels without a calibration)."""
    weights, robust, spec = None, cfg.landmark_robust, obs.spec
    if cfg.landmark_weighting == "sigma" and spec.sigma is not None:
        yaw = torch.rad2deg(angles[:, 1].detach())
        if cfg.landmark_sigma_max_yaw is not None:
            cap = float(cfg.landmark_sigma_max_yaw)
            yaw = yaw.clamp(-cap, cap)
        sigma = spec.sigma_at(yaw, cfg.landmark_sigma_growth).clamp_min(0.5)
        weights = (SIGMA_REF_PX / sigma) ** 2
        if robust > 0:
            robust = robust * sigma  # in units of each point's noise
    return landmark_loss(lm, obs.lm68, weights=weights, valid=obs.valid, robust=robust)


def _add_temporal(terms: dict[str, torch.Tensor], params, cfg: FitConfig) -> None:
    """The video term: with a ``"temporal"`` weight in ``cfg.loss.extra`` the batch is
    consecutive frames and their change is penalised (:func:`temporal_smoothness`)."""
    if cfg.loss.extra.get("temporal") and params.angles.shape[0] > 2:
        terms["temporal"] = temporal_smoothness(params.exp_coeff, params.angles, params.trans)


def single_photos(params) -> bool:
    """Whether ``params`` (:class:`Params`) are fits of single photos: a batch of one, or no
    identity shared by two images or more."""
    return getattr(params, "batch", 1) == 1 or params.id_coeff.shape[0] > 1


def weighed_by_agreement(
    model: MorphableModel,
    params: Params,
    observations: list[LandmarkObservation],
    camera: CameraConfig,
    scale: float,
) -> list[LandmarkObservation]:
    """The observations with each point's weight times its agreement with the current
    (starting) parameters (:func:`facerecon.fit.landmarks.agreement_weights`): where the
    estimate puts the point under each observation's own landmark definition."""
    with torch.no_grad():
        vertices = model.shape(params.ids(), params.exp_coeff)
        out = []
        for obs in observations:
            pred = spec_landmarks(obs.spec, vertices, params.angles, params.trans, camera)
            w = agreement_weights(obs.lm68, pred, scale)
            valid = w if obs.valid is None else obs.valid.to(w) * w
            out.append(dataclasses.replace(obs, valid=valid))
    return out


def prior_weights(params, cfg: FitConfig) -> tuple[float, float]:
    """``(alpha, beta)`` of the coefficient prior for ``params``.

    The landmark and photometric terms are means over the batch, and so is the prior of an
    expanded shared coefficient: by default a shared identity is held to the prior as if the
    batch were one image. With ``cfg.shared_prior == "map"`` a coefficient shared by ``B``
    images (``Params`` with one row) gets ``1 / B`` of the weight: the posterior of ``B``
    independent observations, whose evidence adds up while the prior counts once.

    A fit of single photos (no identity shared by two images or more) has its weights times
    ``cfg.single_prior_scale`` (``auto``'s refinement: ``REFINE_PRIOR_SCALE``); a shared
    identity keeps the loss's weights.
    """
    alpha, beta = cfg.loss.alpha, cfg.loss.beta
    batch = getattr(params, "batch", 1)
    if single_photos(params):
        return alpha * cfg.single_prior_scale, beta * cfg.single_prior_scale
    if cfg.shared_prior != "map":
        return alpha, beta
    if batch > 1 and params.id_coeff.shape[0] == 1:
        alpha = alpha / batch
    shared_exp = getattr(params, "exp_shared", None)
    if batch > 1 and shared_exp is not None and shared_exp.shape[0] == 1:
        beta = beta / batch
    return alpha, beta


def prior_term(params, cfg: FitConfig) -> torch.Tensor:
    """The coefficient prior of ``params`` (:func:`coefficient_regularization`): about the
    model's mean (``cfg.prior_centre == "zero"``) or, with ``"init"``, about the starting
    estimate (``Params.load``: a network's identity and expression, held by
    ``cfg.init_prior`` times the weights :func:`prior_weights` gives)."""
    alpha, beta = prior_weights(params, cfg)
    ids, exp = params.ids(), params.exp_coeff  # (B, n), expanded where shared
    if cfg.prior_centre == "init":
        ids, exp = ids - params.id_prior, exp - params.exp_prior
        alpha, beta = alpha * cfg.init_prior[0], beta * cfg.init_prior[1]
    return coefficient_regularization(ids, exp, params.tex_coeff, alpha, beta, delta=cfg.loss.delta)


#: the target photos' resized copies (:func:`_resize`)
_RESIZED = TensorMemo(size=8)


def _floats(parts: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.detach()) for k, v in parts.items()}


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """``x (B, C, S, S)`` area-resized to ``size``; a photo's resized copy is made once per fit
    (the same tensor every step; :data:`_RESIZED`), a render's every call."""
    if x.shape[-1] == size:
        return x
    if x.requires_grad:
        return F.interpolate(x, size=(size, size), mode="area")
    return _RESIZED.get((x,), lambda: F.interpolate(x, size=(size, size), mode="area"), size)


def hybrid_terms(
    model: MorphableModel,
    params: Params,
    target: FitTarget,
    camera: CameraConfig,
    stage: StageConfig,
    cfg: FitConfig,
    facerec: Embedder | None = None,
    target_embedding: torch.Tensor | None = None,
    observations: list[LandmarkObservation] | None = None,
) -> dict[str, torch.Tensor]:
    """Every loss term of the current parameters, rendering at ``stage.size``.

    ``observations`` (:func:`landmark_observations`) are the landmark sets and which surface
    points they are (default: ``target.lm68`` on the model's fixed landmark vertices). With
    ``stage.mesh_fraction < 1`` the photometric terms render the model decimated to that
    fraction of its vertices (:func:`facerecon.morphable.decimate.coarse_model`, which holds
    the albedo term too); the landmark terms stay on the full model.
    """
    w = cfg.loss
    ids = params.ids()
    mesh = coarse_model(model, stage.mesh_fraction)
    vertices, albedo = mesh(ids, params.exp_coeff, params.tex_coeff)
    terms: dict[str, torch.Tensor] = {}
    if observations is None:
        spec = landmark_spec(model, contour=False)
        observations = [LandmarkObservation(spec, target.lm68, target.lm_valid)]
    if mesh is model:
        points_at = lambda i: vertices[:, i]  # noqa: E731
    else:
        points_at = lambda i: model.shape_at(ids, params.exp_coeff, i)  # noqa: E731
    lm, terms["landmark"] = _landmarks_and_term(observations, points_at, params, cfg, camera)
    terms["coef"] = prior_term(params, cfg)
    terms["tex"] = albedo_flatness_loss(albedo, mesh.skin_mask)
    _add_temporal(terms, params, cfg)
    if w.w_light:
        terms["light"] = lighting_regularization(params.gamma)
    if stage.photometric or stage.perceptual:
        cam = camera.scaled(stage.size) if stage.size != camera.size else camera
        out = render(
            vertices if stage.photo_shape else vertices.detach(),
            albedo,
            mesh.triangles,
            params.angles,
            params.trans,
            params.gamma,
            cam,
            backend=cfg.rasterizer,
        )
        front = front_pixels(mesh, out.face_idx).unsqueeze(1)
        face_mask = out.mask.to(out.image.dtype) * front
        image = _resize(target.image, stage.size)
        attention = _resize(target.attention, stage.size)
        if stage.photometric:
            terms["photo"] = photometric_loss(image, out.image, attention * face_mask)
            if cross_view_active(cfg, image.shape[0]):
                terms["cross_view"] = cross_view_term(mesh, vertices, params, image, out, cam)
        if stage.perceptual and facerec is not None and target_embedding is not None:
            composite = out.image * face_mask + image * (1 - face_mask)
            composite = _resize(composite, camera.size) if stage.size != camera.size else composite
            emb = facerec(composite, lm)
            terms["perceptual"] = perceptual_loss(target_embedding, emb)
    return terms


#: views the cross-view term needs. Two views leave the turn between them and the face's depth
#: trading against each other (near-orthographic views, the classic two-view ambiguity): on a
#: bfm-lite pair at 0 / 60 degrees yaw the term bent the face to 2.4 mm against the landmark
#: fit's 0.84 (average face 0.74); with a third view that trade is fixed
CROSS_VIEW_MIN_VIEWS = 3


def cross_view_active(cfg: FitConfig, views: int) -> bool:
    """Whether :func:`hybrid_terms` adds the cross-view term: it has a weight, the batch is
    simultaneous views of one face (``shared_expression``) and there are at least
    :data:`CROSS_VIEW_MIN_VIEWS` of them."""
    return (
        "cross_view" in cfg.loss.extra and cfg.shared_expression and views >= CROSS_VIEW_MIN_VIEWS
    )


def cross_view_term(
    model: MorphableModel,
    vertices: torch.Tensor,
    params: Params,
    image: torch.Tensor,
    out,
    camera: CameraConfig,
    depth_tol: float = 0.02,
    min_cos: float = 0.3,
) -> torch.Tensor:
    """The cross-view term of simultaneous views of one face
    (:func:`facerecon.losses.cross_view_loss`): every front-region vertex that two views see
    must have one albedo, the photo's colour at its projection divided by that view's shading.
    It moves the shape through where each view's projection lands on the photo (and through
    the normals of the shading), and never asks the model's albedo to explain the skin.

    Args:
        vertices: ``(V, N, 3)`` mm, the views' (one shape); params: their pose and light.
        image: ``(V, 3, S, S)`` the photos at the stage size; out: their
            :class:`facerecon.render.RenderOutput` at that size (its z-buffer gives
            visibility).
        camera: the stage's camera.
        depth_tol: visibility tolerance (scene units; 0.02 = 2 mm).
        min_cos: a view's points seen more obliquely than ``acos(min_cos)`` are left out;
            above, each point is weighted by the cosine.
    """
    from facerecon.losses import cross_view_loss, sample_at_points
    from facerecon.render import sh_shading, vertex_normals, visible_vertices

    scene = transform(vertices, params.angles, params.trans, camera)
    uv, depth = project(scene, camera)
    normals = vertex_normals(scene, model.triangles)
    with torch.no_grad():
        eye = scene.new_tensor([0.0, 0.0, camera.cam_dist])
        to_eye = F.normalize(eye - scene, dim=-1)
        cos = (normals * to_eye).sum(-1)
        seen = visible_vertices(uv, depth, out.depth, depth_tol) & model.front_mask
        weight = seen.to(cos.dtype) * torch.where(cos > min_cos, cos, torch.zeros_like(cos))
    colors = sample_at_points(image, uv)
    return cross_view_loss(colors, sh_shading(normals, params.gamma), weight)


def front_pixels(model: MorphableModel, face_idx: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` float: the visible triangle at the pixel is one of ``front_triangles``.

    The TensorFlow release's crop mask: its front triangles index the full vertex array after
    gathering the front subset (the PyTorch port applies subset indices to the full array,
    which selects the wrong triangles). Here ``model.front_face_mask`` marks those triangles
    in the full mesh once, and a pixel counts when the z-buffer's nearest triangle is one.
    """
    covered = face_idx >= 0
    return (covered & model.front_face_mask[face_idx.clamp(min=0)]).to(model.mean_shape.dtype)


def fit_hybrid(
    params: Params,
    terms_of: Callable[[Params, StageConfig], dict[str, torch.Tensor]],
    stage: StageConfig,
    cfg: FitConfig,
    history: list[dict[str, float]],
    name: str,
) -> None:
    """One coarse-to-fine stage of the full hybrid loss over every parameter: ``stage.iters``
    steps on ``terms_of(params, stage)`` (:func:`hybrid_terms` of the fit); logs as ``name``."""
    every = ("angles", "trans", "id_coeff", "exp_coeff", "tex_coeff", "gamma")
    names = tuple(n for n in every if n not in stage.frozen)
    opt = _optimizer(params, cfg, names)
    base = [g["lr"] for g in opt.param_groups]
    total, parts = None, {}
    for step in range(stage.iters):
        _cosine_lr(opt, base, step, stage.iters, cfg.lr_decay)
        opt.zero_grad(set_to_none=True)
        total, parts = hybrid_loss(terms_of(params, stage), cfg.loss)
        total.backward()
        opt.step()
    if total is not None:
        history.append({"stage": name, "total": float(total.detach()), **_floats(parts)})


def fit(
    model: MorphableModel,
    target: FitTarget,
    cfg: FitConfig | None = None,
    camera: CameraConfig | None = None,
    facerec: Embedder | None = None,
    init: torch.Tensor | None = None,
) -> FitResult:
    """Fit coefficients to a batch of aligned photos (or one image set when
    ``cfg.shared_identity``).

    Args:
        model: face model (any source: bfm-lite, bfm09, ict).
        target: aligned crops, landmarks and optional attention; see :class:`FitTarget`.
        cfg: stages, learning rates and loss weights (paper weights by default).
        camera: the crop camera (paper's 224 / 1015 by default).
        facerec: callable ``(image (B,3,S,S), lm68 (B,68,2)) -> (B,D)`` face-recognition
            embedding, e.g. ``functools.partial(facerecon.nets.facerec.embed, load_facerec())``;
            None disables the perceptual term.
        init: ``(B, layout.size)`` starting coefficients (default: mean face, zero pose).

    Returns:
        :class:`FitResult` with ``coeffs (B, model.layout.size)``.
    """
    cfg = cfg or FitConfig()
    camera = camera or CameraConfig()
    start = time.perf_counter()
    if target.attention is None:
        from facerecon.skin import skin_attention, skin_probability

        target = dataclasses.replace(
            target, attention=skin_attention(skin_probability(target.image))
        )
    batch = target.image.shape[0]
    if "cross_view" in cfg.loss.extra and not cross_view_active(cfg, batch):
        # the term is asked for but cannot run (too few views): nothing photometric may move
        # the shape then
        cfg = cfg.photometric_frozen(SHAPE)
    params = Params(model, batch, cfg.shared_identity, target.image, cfg.shared_expression)
    if init is not None:
        params.load(model, init)
    history: list[dict[str, float]] = []
    observations = landmark_observations(model, target, cfg)
    if init is not None and cfg.single_agreement > 0 and single_photos(params):
        observations = weighed_by_agreement(
            model, params, observations, camera, cfg.single_agreement
        )
    if cfg.landmark_iters:
        fit_landmarks(model, params, target, camera, cfg, history, observations)
    target_embedding = None
    if facerec is not None and (cfg.coarse.perceptual or cfg.fine.perceptual):
        with torch.no_grad():
            target_embedding = facerec(target.image, target.lm68)

    def terms_of(p: Params, stage: StageConfig) -> dict[str, torch.Tensor]:
        return hybrid_terms(
            model, p, target, camera, stage, cfg, facerec, target_embedding, observations
        )

    for name, stage in (("coarse", cfg.coarse), ("fine", cfg.fine)):
        if stage.iters:
            fit_hybrid(params, terms_of, stage, cfg, history, name)
    return FitResult(params.as_vector(model), history, time.perf_counter() - start)

"""``rnet`` and ``auto``: the R-Net's regression, alone or refined by a short fit."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from facerecon.fit import FitConfig, FitTarget
from facerecon.methods.base import Estimate, MethodSpec, load_rnet_checked
from facerecon.methods.fit import FitMethod, embedder_for

if TYPE_CHECKING:
    from facerecon.morphable import MorphableModel

__all__ = [
    "AutoMethod",
    "PGNMethod",
    "RNetMethod",
    "load_pgn_checked",
    "network_estimate",
    "refined_estimate",
]


class RNetMethod:
    """``rnet``: one R-Net forward pass per crop.

    For an image set (``shared_identity``) the identities are aggregated: with a C-Net by its
    confidences and ``strategy`` (:func:`facerecon.aggregate.aggregate_set`; the per-image
    confidences are returned), else by plain averaging.
    """

    name: ClassVar[str] = "rnet"
    uses_rnet: ClassVar[bool] = True
    uses_more_landmarks: ClassVar[bool] = False
    stage: ClassVar[str] = "R-Net regression"

    def __init__(self, model: MorphableModel, rnet, cnet=None, strategy: str = "s4"):
        self.model = model
        self.rnet = rnet
        self.cnet = cnet
        self.strategy = strategy

    @classmethod
    def from_spec(cls, spec: MethodSpec, model: MorphableModel) -> RNetMethod:
        return cls(model, *_nets(spec, model, cls.name), strategy=spec.strategy)

    def __call__(self, target: FitTarget, shared_identity: bool = False) -> Estimate:
        from facerecon.aggregate import aggregate_set, image_confidence
        from facerecon.nets.rnet import predict_coeffs

        t0 = time.perf_counter()
        image = target.image
        if shared_identity and self.cnet is not None:
            from facerecon.nets.cnet import predict_set

            coeffs, conf = predict_set(self.rnet, self.cnet, image)
            agg = aggregate_set(coeffs, conf, self.model.layout, self.strategy).to(image.dtype)
            return network_estimate(agg, t0, image_confidence(conf))
        coeffs = predict_coeffs(self.rnet, image).to(image.dtype)
        if shared_identity:
            coeffs = aggregate_set(coeffs, None, self.model.layout, "avg")
        return network_estimate(coeffs, t0)


def network_estimate(coeffs, t0: float, confidences=None, lm3d=None) -> Estimate:
    """The :class:`Estimate` of a network's pass begun at ``perf_counter() == t0``."""
    seconds = time.perf_counter() - t0
    return Estimate(coeffs, confidences, [], seconds, lm3d, stages={"network": seconds})


def refined_estimate(init: Estimate, refined: Estimate, t0: float) -> Estimate:
    """A network's estimate ``init`` refined by a fit (``refined``), begun at ``t0``: the
    refined coefficients, the network's confidences, both stages' seconds, the landmarks the
    fit used in place of the detected ones."""
    stages = {**init.stages, **refined.stages}
    return Estimate(refined.coeffs, init.confidences, refined.history,
                    time.perf_counter() - t0, stages=stages,
                    replaced_lm68=refined.replaced_lm68)  # fmt: skip


def _nets(spec: MethodSpec, model: MorphableModel, method: str) -> tuple[Any, Any]:
    """``(rnet, cnet or None)`` of a spec."""
    rnet = load_rnet_checked(spec.weights, model, spec.device, method)
    cnet = None
    if spec.cnet is not None:
        from facerecon.nets.cnet import load_cnet

        cnet = load_cnet(spec.cnet, device=torch.device(spec.device))
    return rnet, cnet


class AutoMethod:
    """``auto``: the R-Net's estimate (:class:`RNetMethod`, so image sets start from the
    aggregated identity) refined by a short fit from it.

    Args:
        network: the :class:`RNetMethod` (its C-Net and strategy aggregate image sets).
        refiner: the refinement, a :class:`FitMethod` (default: :meth:`FitConfig.refine`, the
            noise-aware fit's settings from the net's estimate).
    """

    name: ClassVar[str] = "auto"
    uses_rnet: ClassVar[bool] = True
    uses_more_landmarks: ClassVar[bool] = True
    stage: ClassVar[str] = "R-Net + fitting"

    def __init__(self, network: RNetMethod, refiner: FitMethod | None = None):
        self.model = network.model
        self.network = network
        self.refiner = refiner or FitMethod(network.model, FitConfig.refine())

    @classmethod
    def from_spec(cls, spec: MethodSpec, model: MorphableModel) -> AutoMethod:
        rnet, cnet = _nets(spec, model, cls.name)
        cfg = FitConfig.refine()
        refiner = FitMethod(model, cfg, embedder_for(cfg, spec), spec.rasterizer)
        return cls(RNetMethod(model, rnet, cnet, spec.strategy), refiner)

    def __call__(self, target: FitTarget, shared_identity: bool = False) -> Estimate:
        t0 = time.perf_counter()
        init = self.network(target, shared_identity)
        res = self.refiner(target, shared_identity, init=init.coeffs)
        return refined_estimate(init, res, t0)


class PGNMethod:
    """``pgn``: one PGN forward pass per crop (:mod:`facerecon.nets.pgn`): shape coefficients
    regressed, pose solved from the predicted 3D landmarks.

    For an image set (``shared_identity``) the identities are averaged and every image's pose
    is solved again for that shared shape (so pose and shape stay consistent). ``flip``
    (default on) averages the landmarks of each crop and of its mirror image before the pose
    is solved (:func:`facerecon.nets.pgn.predict_pgn`: 5 ms more per face on a CPU, a lower
    rotation error).
    """

    name: ClassVar[str] = "pgn"
    uses_rnet: ClassVar[bool] = False
    uses_more_landmarks: ClassVar[bool] = False
    stage: ClassVar[str] = "PGN regression"

    def __init__(self, model: MorphableModel, pgn, flip: bool = True):
        self.model = model
        self.pgn = pgn
        self.flip = flip

    @classmethod
    def from_spec(cls, spec: MethodSpec, model: MorphableModel) -> PGNMethod:
        return cls(model, load_pgn_checked(spec, model))

    def __call__(self, target: FitTarget, shared_identity: bool = False) -> Estimate:
        from facerecon.nets.pgn import predict_pgn

        t0 = time.perf_counter()
        image = target.image
        coeffs, lm3d = predict_pgn(self.pgn, self.model, image, flip=self.flip)
        if shared_identity and len(coeffs) > 1:
            coeffs = with_identity(self.model, coeffs, lm3d, None)
        return network_estimate(coeffs.to(image.dtype), t0, lm3d=lm3d)


def with_identity(model: MorphableModel, coeffs, lm3d, id_coeff=None):
    """PGN coefficients ``(B, layout.size)`` with one identity (``id_coeff (n_id,)``, default
    their mean) and every pose solved again from the landmarks ``lm3d (B, 68, 3)`` for it."""
    from facerecon.nets.pgn import pgn_coeffs

    lay = model.layout
    parts = lay.split(coeffs)
    ids = parts["id_coeff"].mean(0) if id_coeff is None else id_coeff
    shape = torch.cat(
        [parts["id_coeff"], parts["exp_coeff"], parts["tex_coeff"], parts["gamma"]], dim=-1
    )
    ids = ids.to(shape).expand(len(coeffs), -1)
    return pgn_coeffs(model, {"shape": shape, "lm3d": lm3d.to(shape)}, id_coeff=ids)


def load_pgn_checked(spec: MethodSpec, model: MorphableModel):
    """The PGN of ``spec.pgn_weights`` (the shipped one for the model by default), checked
    against the face model's layout."""
    from facerecon.errors import ModelFileError
    from facerecon.nets.pgn import load_pgn
    from facerecon.nets.shipped import shipped_weights

    path = spec.pgn_weights or shipped_weights("pgn", model.name)
    if path is None:
        raise ModelFileError(
            f"--method pgn needs PGN weights for {model.name}: pass --pgn-weights PATH "
            "(train them with `facerecon train pgn`)"
        )
    net = load_pgn(path, device=torch.device(spec.device))
    if net.layout != model.layout:
        raise ModelFileError(
            f"{path} predicts layout {net.layout} but face model {model.name} needs {model.layout}"
        )
    return net

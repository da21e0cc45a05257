"""Reconstruction methods: one contract, one registry.

Every method takes what the alignment stage produces -- a batch of 224 crops and their 68
landmarks as a :class:`facerecon.fit.FitTarget` -- and returns an :class:`Estimate`: the full
coefficient vector per image (layout of :mod:`facerecon.morphable.layout`), optional per-image
confidences and the optimiser's history. With ``shared_identity`` the batch is one person (an
image set): every row of ``Estimate.coeffs`` then carries the same ``id_coeff``.

============  =======================================  ===========================================
name          class                                    what it does
============  =======================================  ===========================================
``fit``       :class:`~.fit.FitMethod`                 analysis-by-synthesis from the mean face
``rnet``      :class:`~.network.RNetMethod`            one R-Net pass; sets: C-Net or averaging
``auto``      :class:`~.network.AutoMethod`            the R-Net's estimate refined by a short fit
``pgn``       :class:`~.network.PGNMethod`             pose from predicted 3D landmarks (PGN)
``mvfit``     :class:`~.multiview.MultiViewFitMethod`  views of one face: one identity, expression
``mvr``       :class:`~.multiview.MVRMethod`           DF-MVR network on 1-3 views
``mvr-auto``  :class:`~.multiview.MVRAutoMethod`       DF-MVR's estimate + a short joint fit
============  =======================================  ===========================================

Multi-view methods (``multiview = True``) treat their whole batch as simultaneous views of one
face (``reconstruct --views``).

Adding a method is a class (``name``, ``stage``, ``uses_rnet``, ``uses_more_landmarks``,
``from_spec``, ``__call__``;
see :class:`~.base.Method`) plus one line in :data:`METHODS`. The CLI's ``--method`` choices,
:mod:`facerecon.pipeline`, the benchmarks (:mod:`facerecon.evaluate.benchmark`) and
``scripts/eval_*`` all take methods from here.

Methods hold loaded models (nets, face model, face-recognition embedder): build one once with
:func:`build_method` from a :class:`~.base.MethodSpec` (names and files), or from loaded
objects with its constructor, then call it on many batches. This module itself imports nothing
heavy (the CLI builds its parser from :func:`method_names` without loading torch); the
classes and the contract's names load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from facerecon.errors import FaceReconError

if TYPE_CHECKING:
    from facerecon.methods.base import Estimate, Method, MethodSpec
    from facerecon.morphable import MorphableModel

#: name -> ``"module:Class"`` of the method; the order is the CLI's.
METHODS: dict[str, str] = {
    "fit": "facerecon.methods.fit:FitMethod",
    "rnet": "facerecon.methods.network:RNetMethod",
    "auto": "facerecon.methods.network:AutoMethod",
    "pgn": "facerecon.methods.network:PGNMethod",
    "mvfit": "facerecon.methods.multiview:MultiViewFitMethod",
    "mvr": "facerecon.methods.multiview:MVRMethod",
    "mvr-auto": "facerecon.methods.multiview:MVRAutoMethod",
}

#: the methods whose estimate is a network's pass alone, without a fit (their
#: ``uses_more_landmarks`` is False): preparing the photos paces their runs
#: (:func:`facerecon.pipeline.prepare_processes`). Names, so the CLI asks before torch loads;
#: a test checks them against the classes.
NETWORK_ONLY: tuple[str, ...] = ("rnet", "pgn", "mvr")

_LAZY = {
    "Estimate": "facerecon.methods.base",
    "Method": "facerecon.methods.base",
    "MethodSpec": "facerecon.methods.base",
    "crops_target": "facerecon.methods.base",
    "FitMethod": "facerecon.methods.fit",
    "RNetMethod": "facerecon.methods.network",
    "AutoMethod": "facerecon.methods.network",
    "PGNMethod": "facerecon.methods.network",
    "MultiViewFitMethod": "facerecon.methods.multiview",
    "MVRMethod": "facerecon.methods.multiview",
    "MVRAutoMethod": "facerecon.methods.multiview",
}

__all__ = [
    "METHODS",
    "AutoMethod",
    "Estimate",
    "FitMethod",
    "MVRAutoMethod",
    "MVRMethod",
    "Method",
    "MethodSpec",
    "MultiViewFitMethod",
    "PGNMethod",
    "RNetMethod",
    "build_method",
    "crops_target",
    "method_class",
    "method_names",
    "multiview_methods",
    "network_methods",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def method_names() -> list[str]:
    """The registered method names (the CLI's ``--method`` choices)."""
    return list(METHODS)


def method_class(name: str) -> type:
    """The class registered as ``name``; a one-line error for an unknown name."""
    try:
        module, cls = METHODS[name].split(":")
    except KeyError:
        raise FaceReconError(
            f"unknown method {name!r}; known: {', '.join(method_names())}"
        ) from None
    return getattr(importlib.import_module(module), cls)


def network_methods() -> tuple[str, ...]:
    """Names of the methods that need R-Net weights (the shipped ones by default)."""
    return tuple(name for name in METHODS if method_class(name).uses_rnet)


def multiview_methods() -> tuple[str, ...]:
    """Names of the methods whose batch is the views of one face (``--views``)."""
    return tuple(n for n in METHODS if getattr(method_class(n), "multiview", False))


def build_method(name: str, spec: MethodSpec, model: MorphableModel) -> Method:
    """The method ``name`` built from ``spec`` for ``model`` (loads its nets)."""
    return method_class(name).from_spec(spec, model)

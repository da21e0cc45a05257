"""The method contract: what every reconstruction method takes and returns.

See :mod:`facerecon.methods` for the registry.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import torch

from facerecon.errors import ModelFileError
from facerecon.fit import FitTarget

if TYPE_CHECKING:
    from facerecon.morphable import MorphableModel

__all__ = ["Embedder", "Estimate", "Method", "MethodSpec", "crops_target", "load_rnet_checked"]

Embedder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Estimate:
    """What a method returns for a batch of ``B`` crops.

    Attributes:
        coeffs: ``(B, layout.size)`` coefficients (detached); with a shared identity every
            row has the same ``id_coeff``.
        confidences: ``(B,)`` per-image confidence (C-Net: summed element-wise confidences),
            or None when the method has none.
        history: per-stage loss values of a fit (empty for a pure regression).
        seconds: wall time of the call.
        lm3d: ``(B, 68, 3)`` the PGN's predicted 3D landmarks (``(u, v, depth)`` crop pixels),
            from which its pose was solved; None for other methods.
        stages: ``seconds`` split by pipeline stage (:data:`facerecon.timing.STAGES`):
            ``{"network": ...}``, ``{"fit": ...}`` or both (``auto``).
        replaced_lm68: ``{row: (source, (68, 2) crop pixels)}`` for the crops whose detected
            landmarks the method did not use, and the points it used instead (the multi-view
            fits' side views posed by the PGN: source ``"pgn"``); empty otherwise.
    """

    coeffs: torch.Tensor
    confidences: torch.Tensor | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    lm3d: torch.Tensor | None = None
    stages: dict[str, float] = field(default_factory=dict)
    replaced_lm68: dict[int, tuple[str, torch.Tensor]] = field(default_factory=dict)


class Method(Protocol):
    """A reconstruction method: crops + landmarks -> coefficients."""

    name: ClassVar[str]  # the registry key (``--method NAME``)
    stage: ClassVar[str]  # what a failure message calls the method's stage
    uses_rnet: ClassVar[bool]  # needs R-Net weights (the shipped ones by default)
    # fits FitTarget.more_lm68, the second detector's landmarks (detection skips them if not)
    uses_more_landmarks: ClassVar[bool]
    model: MorphableModel

    @classmethod
    def from_spec(cls, spec: MethodSpec, model: MorphableModel) -> Method:
        """Build the method from names and files (loads its nets)."""
        ...

    def __call__(self, target: FitTarget, shared_identity: bool = False) -> Estimate:
        """Coefficients for ``target.image (B, 3, 224, 224)`` / ``target.lm68 (B, 68, 2)``;
        ``shared_identity``: the batch is one person (image set)."""
        ...


@dataclass
class MethodSpec:
    """How to build a method from names and files (what the CLI and the benchmarks know).

    Attributes:
        weights: R-Net weights (``rnet``, ``auto``); required by those methods.
        mvr_weights: DF-MVR weights (``mvr``, ``mvr-auto``; None: the shipped ones).
        pgn_weights: PGN weights (``pgn``; None: the shipped ones; the multi-view fits pose
            their side views with them, :func:`facerecon.methods.multiview.pose_guided_views`).
        shipped: False: the multi-view fits use no shipped weights the user did not name
            (``--no-shipped-weights``).
        cnet: C-Net weights; image sets are then aggregated with its confidences by
            ``strategy`` (else plain averaging).
        strategy: :data:`facerecon.aggregate.STRATEGIES` key.
        fast: ``fit`` runs :meth:`FitConfig.fast` (fewer steps, no perceptual term).
        perceptual: load the face-recognition embedder for the perceptual term.
        rasterizer: :func:`facerecon.render.rasterize` backend of the fits.
        device: where the nets run.
    """

    weights: Path | None = None
    mvr_weights: Path | None = None
    pgn_weights: Path | None = None
    shipped: bool = True
    cnet: Path | None = None
    strategy: str = "s4"
    fast: bool = False
    perceptual: bool = True
    rasterizer: str = "torch"
    device: str | torch.device = "cpu"

    def embedder(self) -> Embedder | None:
        """The perceptual term's embedder, or None when ``perceptual`` is off."""
        if not self.perceptual:
            return None
        from facerecon.nets.facerec import embed, load_facerec

        return functools.partial(embed, load_facerec(device=torch.device(self.device)))


def crops_target(
    faces: Sequence[Any],
    like: torch.Tensor,
    detector: str | tuple[str | None, ...] | None = None,
    alt_lm68: Sequence[dict[str, np.ndarray]] | None = None,
) -> FitTarget:
    """Aligned faces (:class:`facerecon.detect.AlignedFace`: ``image (S, S, 3)`` uint8,
    ``lm68 (68, 2)`` crop pixels) as a :class:`FitTarget`: ``image (B, 3, S, S)`` in
    0..1 and ``lm68 (B, 68, 2)``, on the device and dtype of ``like``; ``detector``: where the
    landmarks came from (``FitTarget.detector``); ``alt_lm68``: per face, other detectors'
    landmarks ``{name: (68, 2)}`` in *crop* pixels (``FitTarget.more_lm68``, NaN where a
    detector has none for a face)."""
    image = torch.from_numpy(np.stack([f.image for f in faces])).to(like.device, like.dtype)
    lm = torch.from_numpy(np.stack([f.lm68 for f in faces])).to(like.device, like.dtype)
    more = []
    for name in sorted({k for d in alt_lm68 or () for k in d}):
        rows = [np.asarray(d.get(name, np.full((68, 2), np.nan)), np.float64) for d in alt_lm68]
        more.append((name, torch.from_numpy(np.stack(rows)).to(like.device, like.dtype)))
    image = (image / 255.0).permute(0, 3, 1, 2).contiguous()
    return FitTarget(image, lm, detector=detector, more_lm68=tuple(more))


def load_rnet_checked(weights: Path | str | None, model: MorphableModel, device, method: str):
    """The R-Net of ``weights``, checked against the face model's coefficient layout."""
    from facerecon.nets.rnet import load_rnet

    if weights is None:
        raise ModelFileError(
            f"--method {method} needs R-Net weights: pass --weights PATH "
            "(train them with `facerecon train rnet`)"
        )
    net = load_rnet(weights, device=torch.device(device))
    size = getattr(getattr(net, "layout", None), "size", None)
    if size is not None and size != model.layout.size:
        raise ModelFileError(
            f"{weights} predicts {size} coefficients but face model {model.name} "
            f"needs {model.layout.size}"
        )
    return net

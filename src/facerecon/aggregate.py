"""Aggregating identity coefficients over an image set (Deng et al. 2019, Sec. 4 and 5).

All functions are pure and batched: ``id_coeff`` is ``(M, K)`` (one set of M images) or
``(S, M, K)`` (S sets of M images each); the set axis is always ``-2``. Confidences ``conf``
come from the C-Net (:class:`facerecon.nets.cnet.CNet`): positive, ``(..., M, K)``
element-wise, or ``(..., M, 1)`` one scalar per image (both broadcast). ``conf=None`` means
equal confidence for every image and element, so every strategy except :func:`s3_max_pick`
reduces to :func:`average`.

Strategies (``STRATEGIES``). "S4" is the paper's element-wise confidence aggregation; S1-S3 are
the alternatives the project issue names for the comparison with plain averaging (image-level
scores and picking the best image):

=====  ========================  =========================================================
name   function                  aggregate of values ``x_ik`` with confidences ``c_ik``
=====  ========================  =========================================================
avg    :func:`average`           ``mean_i x_ik`` (naive averaging)
s1     :func:`s1_global_score`   ``sum_i w_i x_ik``, ``w = g / sum g``, ``g_i = mean_k c_ik``
s2     :func:`s2_summed_score`   ``sum_i w_i x_ik``, ``w = s / sum s``, ``s_i = sum_k c_ik``
s3     :func:`s3_max_pick`       ``x_{i*k}``, ``i* = argmax_i sum_k c_ik`` (best image)
s4     :func:`s4_elementwise`    ``sum_i c_ik x_ik / sum_i c_ik`` (paper's default)
=====  ========================  =========================================================

Note on S1 vs S2: for the *same* element-wise confidences the two give the same aggregate (the
mean is the sum divided by K, and the factor cancels in the normalisation). They differ in the
way they are trained: S1 is a C-Net with one scalar output per image (``CNet(n_id=1)``, i.e.
``conf (..., M, 1)``), S2 sums the outputs of an element-wise C-Net. Both are provided so either
net can be evaluated under its own name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from facerecon.morphable.layout import CoeffLayout

__all__ = [
    "STRATEGIES",
    "aggregate",
    "aggregate_set",
    "average",
    "image_confidence",
    "s1_global_score",
    "s2_summed_score",
    "s3_max_pick",
    "s4_elementwise",
]

Strategy = Callable[[Tensor, "Tensor | None"], Tensor]


def _check(id_coeff: Tensor, conf: Tensor | None) -> Tensor:
    """Validate shapes; return confidences broadcast to ``id_coeff``'s shape (ones if None)."""
    if id_coeff.dim() < 2:
        raise ValueError(f"id_coeff must be (M, K) or (S, M, K), got {tuple(id_coeff.shape)}")
    if id_coeff.shape[-2] < 1:
        raise ValueError("an image set needs at least one image")
    if conf is None:
        return torch.ones_like(id_coeff)
    if conf.dim() != id_coeff.dim() or conf.shape[-1] not in (1, id_coeff.shape[-1]):
        raise ValueError(
            f"conf must be (..., M, K) or (..., M, 1) like id_coeff {tuple(id_coeff.shape)}, "
            f"got {tuple(conf.shape)}"
        )
    return conf.to(id_coeff.dtype).expand_as(id_coeff)


def _weighted_by_image(id_coeff: Tensor, score: Tensor) -> Tensor:
    """``sum_i w_i x_i`` with ``w = score / sum(score)``; ``score (..., M, 1)``."""
    w = score / score.sum(dim=-2, keepdim=True).clamp_min(torch.finfo(score.dtype).tiny)
    return (w * id_coeff).sum(dim=-2)


def average(id_coeff: Tensor, conf: Tensor | None = None) -> Tensor:
    """Naive averaging (the baseline the paper's authors later recommend): ``mean_i x_i``.

    Args:
        id_coeff: ``(M, K)`` or ``(S, M, K)``.
        conf: ignored (accepted so every strategy has the same signature).

    Returns:
        ``(K,)`` or ``(S, K)``.
    """
    _check(id_coeff, conf)
    return id_coeff.mean(dim=-2)


def s1_global_score(id_coeff: Tensor, conf: Tensor | None = None) -> Tensor:
    """S1, one global confidence per image: ``g_i = mean_k c_ik`` (or the scalar output of a
    one-output C-Net), normalised over the set, ``sum_i (g_i / sum_j g_j) x_i``.

    Shapes: ``id_coeff (..., M, K)``, ``conf (..., M, K)`` or ``(..., M, 1)`` -> ``(..., K)``.
    """
    c = _check(id_coeff, conf)
    return _weighted_by_image(id_coeff, c.mean(dim=-1, keepdim=True))


def s2_summed_score(id_coeff: Tensor, conf: Tensor | None = None) -> Tensor:
    """S2, summed element-wise confidences as the image score: ``s_i = sum_k c_ik``,
    ``sum_i (s_i / sum_j s_j) x_i``.

    Shapes: ``id_coeff (..., M, K)``, ``conf (..., M, K)`` or ``(..., M, 1)`` -> ``(..., K)``.
    """
    c = _check(id_coeff, conf)
    return _weighted_by_image(id_coeff, c.sum(dim=-1, keepdim=True))


def s3_max_pick(id_coeff: Tensor, conf: Tensor | None = None) -> Tensor:
    """S3, pick the single most confident image: ``x_{i*}`` with ``i* = argmax_i sum_k c_ik``
    (the first one on ties, e.g. the first image when ``conf`` is None). Not differentiable
    with respect to ``conf``.

    Shapes: ``id_coeff (..., M, K)``, ``conf (..., M, K)`` or ``(..., M, 1)`` -> ``(..., K)``.
    """
    c = _check(id_coeff, conf)
    best = image_confidence(c).argmax(dim=-1)  # (...,)
    idx = best[..., None, None].expand(*id_coeff.shape[:-2], 1, id_coeff.shape[-1])
    return id_coeff.gather(-2, idx).squeeze(-2)


def s4_elementwise(id_coeff: Tensor, conf: Tensor | None = None) -> Tensor:
    """S4, element-wise confidence-weighted mean (the paper's C-Net aggregation):
    ``x_k = sum_i c_ik x_ik / sum_i c_ik``.

    Shapes: ``id_coeff (..., M, K)``, ``conf (..., M, K)`` or ``(..., M, 1)`` -> ``(..., K)``.
    """
    c = _check(id_coeff, conf)
    den = c.sum(dim=-2).clamp_min(torch.finfo(c.dtype).tiny)
    return (c * id_coeff).sum(dim=-2) / den


STRATEGIES: dict[str, Strategy] = {
    "avg": average,
    "s1": s1_global_score,
    "s2": s2_summed_score,
    "s3": s3_max_pick,
    "s4": s4_elementwise,
}


def aggregate(id_coeff: Tensor, conf: Tensor | None = None, strategy: str = "s4") -> Tensor:
    """Aggregate identity coefficients with a named strategy (see the module table).

    Args:
        id_coeff: ``(M, K)`` or ``(S, M, K)``.
        conf: ``(..., M, K)`` / ``(..., M, 1)`` positive confidences, or None (uniform).
        strategy: a key of :data:`STRATEGIES` (``"avg"``, ``"s1"`` .. ``"s4"``).

    Returns:
        ``(K,)`` or ``(S, K)``.
    """
    try:
        fn = STRATEGIES[strategy]
    except KeyError:
        raise ValueError(
            f"unknown aggregation strategy {strategy!r}; known: {sorted(STRATEGIES)}"
        ) from None
    return fn(id_coeff, conf)


def aggregate_set(
    coeffs: Tensor,
    conf: Tensor | None,
    layout: CoeffLayout,
    strategy: str = "s4",
) -> Tensor:
    """Give every image of a set the set's aggregated identity.

    Only ``id_coeff`` is replaced; expression, albedo, pose, lighting and translation stay
    those of each image (the paper aggregates the identity shape only).

    Args:
        coeffs: ``(M, layout.size)`` or ``(S, M, layout.size)`` per-image R-Net coefficients.
        conf: ``(..., M, n_id)`` / ``(..., M, 1)`` C-Net confidences or None (uniform).
        layout: coefficient layout.
        strategy: see :func:`aggregate`.

    Returns:
        Same shape as ``coeffs``.
    """
    parts = dict(layout.split(coeffs))
    ident = aggregate(parts["id_coeff"], conf, strategy)  # (..., n_id)
    parts["id_coeff"] = ident.unsqueeze(-2).expand_as(parts["id_coeff"])
    return layout.join(parts)


def image_confidence(conf: Tensor) -> Tensor:
    """Per-image confidence for reports: ``sum_k c_ik``; ``(..., M, K)`` -> ``(..., M)``."""
    return conf.sum(dim=-1)

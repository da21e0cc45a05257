"""DF-MVR's loss terms (Zhao et al.) as pure functions on batched tensors.

* :func:`dfmvr_landmark_weights`: 20 on the nose ridge (28-30), the eyes (36-47) and the inner
  mouth (60-67), 1 elsewhere.
* :func:`landmark_norm_loss`: the release's 2D landmark term, the weighted mean of the *L2
  norm* (not squared) of each residual.
* :func:`parse_loss`: cross-entropy between a render's soft parse
  (``facerecon.render.render_parse``: differentiable with respect to the shape) and the photo's
  parse labels, optionally weighted per pixel.
* :func:`similarity_align` / :func:`landmark3d_loss`: 3D landmarks after a differentiable
  similarity (Umeyama) alignment on a few points (the release: 7: eye corners, nose, mouth
  corners).
"""

from __future__ import annotations

import torch

from facerecon.losses.terms import landmark_weights

__all__ = [
    "ALIGN7",
    "dfmvr_landmark_weights",
    "landmark3d_loss",
    "landmark_norm_loss",
    "parse_loss",
    "similarity_align",
]

#: 0-based iBUG points of DF-MVR's 7-point 3D alignment: outer / inner eye corners, nose tip,
#: mouth corners
ALIGN7 = (36, 39, 42, 45, 30, 48, 54)
_HEAVY = (*range(28, 31), *range(36, 48), *range(60, 68))


def dfmvr_landmark_weights(
    device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``(68,)``: 20 on 28-30, 36-47 and 60-67 (0-based), 1 elsewhere."""
    return landmark_weights(device, dtype, heavy=_HEAVY)


def landmark_norm_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """``sum_n w_n ||p_n - q_n|| / (B * 68)``.

    Args:
        pred, target: ``(B, 68, 2)`` pixels; weights: ``(68,)`` or ``(B, 68)`` (default
            :func:`dfmvr_landmark_weights`); valid: ``(B, 68)`` multiplies the weights.
        eps: inside the square root (finite gradient at a zero residual).
    """
    b, n = pred.shape[:2]
    w = dfmvr_landmark_weights(pred.device, pred.dtype) if weights is None else weights.to(pred)
    w = w.expand(b, n)
    if valid is not None:
        w = w * valid.to(pred)
    dist = torch.sqrt(((pred - target) ** 2).sum(-1) + eps)
    return (w * dist).sum() / (b * n)


def parse_loss(
    probs: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor | None = None,
    eps: float = 1e-4,
) -> torch.Tensor:
    """Pixel cross-entropy ``-log p[label]`` of a soft parse, weighted mean over pixels.

    Args:
        probs: ``(B, C, H, W)`` class probabilities (rows sum to 1).
        labels: ``(B, H, W)`` int labels in ``0..C-1``.
        weight: ``(B, H, W)`` or ``(B, 1, H, W)`` pixel weights (default 1).
        eps: floor of the probability (the loss stays finite where a class has 0).

    Returns:
        scalar tensor.
    """
    p = probs.gather(1, labels.long().unsqueeze(1)).squeeze(1)  # (B, H, W)
    ce = -torch.log(p.clamp_min(0.0) + eps)
    if weight is None:
        return ce.mean()
    w = weight.reshape(ce.shape).to(ce)
    return (w * ce).sum() / w.sum().clamp_min(1e-8)


def similarity_align(
    src: torch.Tensor, dst: torch.Tensor, on: torch.Tensor | None = None
) -> torch.Tensor:
    """``src`` moved by the similarity (scale, rotation, translation) that best maps its points
    ``on`` onto ``dst``'s (Umeyama 1991, least squares, reflections excluded); differentiable.

    Args:
        src, dst: ``(B, K, 3)``.
        on: indices of the points that define the alignment (default all).

    Returns:
        ``(B, K, 3)`` aligned ``src``.
    """
    from facerecon.procrustes import umeyama

    a = src if on is None else src[:, on]
    b = dst if on is None else dst[:, on]
    scale, rot, t = umeyama(a, b)
    return scale[:, None, None] * src @ rot.transpose(1, 2) + t[:, None]


def landmark3d_loss(
    pred: torch.Tensor, target: torch.Tensor, on: tuple[int, ...] | None = ALIGN7
) -> torch.Tensor:
    """Mean distance (target units) of 3D landmarks after :func:`similarity_align` of ``pred``
    onto ``target`` on the points ``on`` (``None``: all).

    Args:
        pred, target: ``(B, K, 3)``.
    """
    idx = None if on is None else torch.as_tensor(on, device=pred.device)
    aligned = similarity_align(pred, target.to(pred), idx)
    return torch.sqrt(((aligned - target.to(pred)) ** 2).sum(-1) + 1e-12).mean()

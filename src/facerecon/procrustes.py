"""Weighted similarity Procrustes on batched tensors (Umeyama 1991), differentiable.

The one implementation behind pose from 3D landmarks (:func:`facerecon.render.pose_from_landmarks`)
and DF-MVR's 3D-landmark alignment (:func:`facerecon.losses.multiview.similarity_align`);
:func:`facerecon.geometry.umeyama` is the numpy form the evaluation uses.
"""

from __future__ import annotations

import torch

__all__ = ["umeyama"]


def umeyama(
    src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted similarity Procrustes.

    Args:
        src, dst: ``(B, K, 3)`` corresponding points.
        weights: ``(B, K)`` or ``(K,)`` non-negative point weights (default all 1).

    Returns:
        ``scale (B,)``, ``R (B, 3, 3)`` (a rotation, det +1), ``t (B, 3)`` minimising
        ``sum_k w_k |scale * R src_k + t - dst_k|^2``.
    """
    w = src.new_ones(src.shape[:2]) if weights is None else weights.to(src).expand(src.shape[:2])
    w = w / w.sum(1, keepdim=True).clamp_min(1e-12)
    ms = (w[..., None] * src).sum(1, keepdim=True)
    md = (w[..., None] * dst).sum(1, keepdim=True)
    s0, d0 = src - ms, dst - md
    cov = (w[..., None] * d0).transpose(1, 2) @ s0  # (B, 3, 3)
    u, sv, vh = torch.linalg.svd(cov)
    sign = torch.sign(torch.det(u @ vh))
    diag = torch.cat([torch.ones_like(sv[:, :2]), sign[:, None]], dim=1)
    rot = u @ torch.diag_embed(diag) @ vh
    var = (w * (s0**2).sum(-1)).sum(1)
    scale = (sv * diag).sum(-1) / var.clamp_min(1e-12)
    t = md[:, 0] - scale[:, None] * (ms[:, 0, None, :] @ rot.transpose(1, 2))[:, 0]
    return scale, rot, t

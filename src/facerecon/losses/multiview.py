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

And the multi-view fit's cross-view term (not DF-MVR's: its losses compare each view with its
own render only):

* :func:`sample_at_points`: bilinear image values at projected points (differentiable with
  respect to the points: that is how the term moves the shape).
* :func:`cross_view_loss`: the photos' colours at one surface point, divided by each view's
  shading there, must agree between views. The albedo never enters, so the term holds where
  the model's albedo cannot explain the skin (ICT faces, real photos); it is what multi-view
  stereo matches, on the model's surface.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from facerecon.losses.terms import landmark_weights

__all__ = [
    "ALIGN7",
    "cross_view_loss",
    "dfmvr_landmark_weights",
    "landmark3d_loss",
    "landmark_norm_loss",
    "parse_loss",
    "sample_at_points",
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


def sample_at_points(image: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear values of ``image`` at ``points``; differentiable in both.

    Args:
        image: ``(B, C, H, W)``.
        points: ``(B, N, 2)`` pixel coordinates ``(u, v)``, OpenCV pixel-centre convention (the
            centre of the pixel in row r, column c is ``(c, r)``), as
            :func:`facerecon.render.project` gives them. Points outside take the border's
            value (weight them out).

    Returns:
        ``(B, N, C)``.
    """
    h, w = image.shape[-2:]
    gx = (2.0 * points[..., 0] + 1.0) / w - 1.0
    gy = (2.0 * points[..., 1] + 1.0) / h - 1.0
    grid = torch.stack([gx, gy], dim=-1).unsqueeze(2).to(image.dtype)  # (B, N, 1, 2)
    out = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[..., 0].transpose(1, 2)


def cross_view_loss(
    colors: torch.Tensor,
    shading: torch.Tensor,
    weights: torch.Tensor,
    min_shading: float = 0.05,
    eps: float = 1e-2,
) -> torch.Tensor:
    """Disagreement between views of the albedo each view's photo implies at every surface
    point: ``a_v = colors_v / shading_v``; over every pair of views ``(i, j)``, the
    Charbonnier penalty ``sqrt(|a_i - a_j|^2 + eps^2) - eps`` weighted ``w_i w_j``, summed and
    divided by the summed weights. 0 when every point seen twice has one albedo.

    Args:
        colors: ``(V, N, 3)`` each view's photo at the points' projections
            (:func:`sample_at_points`), the views of one face.
        shading: ``(V, N, 3)`` (or ``(V, N, 1)``) each view's irradiance at the points
            (:func:`facerecon.render.sh_shading` with that view's normals and light).
        weights: ``(V, N)`` >= 0: visibility times a viewing-angle weight per view (0: the
            view does not see the point); usually detached.
        min_shading: floor of the shading (no division by a shadow's ~0).
        eps: Charbonnier scale: quadratic below, linear above, so a highlight or an occluder
            seen in one view cannot dominate.

    Returns:
        scalar; 0 with fewer than two views or no point seen twice.
    """
    v = colors.shape[0]
    albedo = colors / shading.clamp_min(min_shading)
    total = colors.new_zeros(())
    norm = colors.new_zeros(())
    for i in range(v):
        for j in range(i + 1, v):
            w = weights[i] * weights[j]  # (N,)
            r2 = ((albedo[i] - albedo[j]) ** 2).sum(-1)
            total = total + (w * (torch.sqrt(r2 + eps * eps) - eps)).sum()
            norm = norm + w.sum()
    return total / norm.clamp_min(1e-8)

"""Pose-dependent jaw-contour landmarks.

The iBUG jaw points 0..16 mark the face *silhouette* in the photo, not fixed points on the skin:
when the head turns, the far-side contour slides onto the cheek. A fixed landmark vertex then
projects inside the silhouette and the landmark loss pulls pose and shape the wrong way (this
costs about 2x the landmark error on a 35-degree yaw photo). Here each jaw landmark gets a set of
candidate vertices on a strip running from its fixed vertex towards the face's centre line, and
at every step the candidate that projects furthest outward (away from the centroid of the
projected jaw) is used. The choice is made without gradient; gradients flow through the chosen
vertex as usual.
"""

from __future__ import annotations

import torch

JAW = tuple(range(17))
NOSE = tuple(range(27, 36))  # defines the face centre line of the candidate strips


def contour_candidates(
    mean_shape: torch.Tensor,
    landmarks68: torch.Tensor,
    band_mm: float = 2.5,
    reach: float = 0.6,
    max_candidates: int = 48,
) -> torch.Tensor:
    """Candidate vertex table ``(68, K)`` int64: row j lists vertices landmark j may move to.

    Rows of non-jaw landmarks repeat their fixed vertex. For jaw landmark j at model position p,
    candidates lie within ``band_mm`` (in the x-y plane) of the segment from p towards the point
    of the face's vertical centre line at the same height, covering ``reach`` of its length, and
    in front of p (z >= p.z). Rows are padded by repeating the fixed vertex.

    Args:
        mean_shape: ``(N, 3)`` mm model-space mean.
        landmarks68: ``(68,)`` fixed landmark vertex indices.
    """
    pts = mean_shape.detach().double()
    lm = landmarks68.long()
    centre_x = pts[lm[list(NOSE)], 0].mean()
    table = lm[:, None].repeat(1, max_candidates)
    for j in JAW:
        p = pts[lm[j]]
        target = torch.stack([centre_x, p[1]])
        seg = target - p[:2]
        length = seg.norm()
        if length < 1e-6:
            continue
        d = seg / length
        rel = pts[:, :2] - p[:2]
        along = rel @ d
        across = (rel - along[:, None] * d).norm(dim=1)
        ok = (along >= 0) & (along <= reach * length) & (across <= band_mm) & (pts[:, 2] >= p[2])
        idx = torch.nonzero(ok).flatten()
        if idx.numel() == 0:
            continue
        # Keep the candidates evenly along the strip when there are too many.
        order = idx[torch.argsort(along[idx])]
        if order.numel() > max_candidates - 1:
            pick = torch.linspace(0, order.numel() - 1, max_candidates - 1).round().long()
            order = order[pick]
        row = torch.cat([lm[j : j + 1], order])
        table[j, : row.numel()] = row
        table[j, row.numel() :] = lm[j]
    return table.to(landmarks68.device)


def select_contour(uv_candidates: torch.Tensor, table_is_jaw: torch.Tensor) -> torch.Tensor:
    """Choose, per landmark, the candidate projecting furthest outward.

    "Outward" is the direction from the centroid of the 17 fixed jaw vertices' projections to
    the landmark's fixed projection (the nose is no reference: on a turned head it swings past
    the far cheek's silhouette).

    Args:
        uv_candidates: ``(B, L, K, 2)`` projected candidates (column 0 = fixed vertex) of the
            first ``L`` of the 68 landmarks, ``L >= 17`` (the jaw rows, or all 68).
        table_is_jaw: ``(L,)`` bool, rows whose choice is dynamic.

    Returns:
        ``(B, L)`` int64 column index into K (0 for non-jaw rows).
    """
    with torch.no_grad():
        centre = uv_candidates[:, list(JAW), 0].mean(dim=1)  # (B, 2)
        fixed = uv_candidates[:, :, 0] - centre[:, None]  # (B, 68, 2)
        outward = fixed / fixed.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        score = ((uv_candidates - centre[:, None, None]) * outward[:, :, None]).sum(-1)
        choice = score.argmax(dim=-1)
        return torch.where(table_is_jaw[None], choice, torch.zeros_like(choice))

"""The individual terms of the hybrid loss (Deng et al. 2019), each a small pure function.

Every function takes batched tensors and returns a scalar tensor in the inputs' dtype and on their
device. Images are RGB in 0..1, landmarks in 224-pixel crop units, coefficients ~ N(0, 1).
Where the paper text and its released code differ, the default follows the paper and the code's
choice is available as an option (named in each docstring).
"""

from __future__ import annotations

import torch

#: 0-based landmark indices the paper weights by 20: nose ridge (28, 29, 30), inner mouth (60..67).
HEAVY_LANDMARKS: tuple[int, ...] = (28, 29, 30, *range(60, 68))


def photometric_loss(
    image: torch.Tensor,
    render: torch.Tensor,
    mask: torch.Tensor,
    eps: float = 1e-6,
    per_image: bool = True,
) -> torch.Tensor:
    """Robust (L2,1) photometric error over the masked face region.

    Per pixel ``sqrt(eps + sum_c (I - R)^2) * mask``, summed over pixels and divided by
    ``max(sum(mask), 1)``. ``mask`` is detached: no gradient flows into it.

    Args:
        image: ``(B, 3, H, W)`` photo, RGB in 0..1.
        render: ``(B, 3, H, W)`` rendered face, RGB in 0..1.
        mask: ``(B, 1, H, W)`` (or ``(B, H, W)``) pixel weights: skin attention x rendered face
            mask (x an optional occlusion mask), or any non-negative per-pixel weight map
            (DF-MVR's parse-based map).
        eps: added under the square root so the gradient is finite where ``I == R``.
        per_image: True (default, the paper's formula per image): normalise each image by its own
            mask sum, then average over the batch. False (both released codes): one sum over the
            whole batch divided by the batch's total mask sum.

    Returns:
        scalar tensor.
    """
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    mask = mask.detach().to(image.dtype)
    err = torch.sqrt(eps + ((image - render) ** 2).sum(dim=1, keepdim=True)) * mask
    if not per_image:
        return err.sum() / mask.sum().clamp(min=1.0)
    num = err.flatten(1).sum(dim=1)
    den = mask.flatten(1).sum(dim=1).clamp(min=1.0)
    return (num / den).mean()


def landmark_weights(
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    heavy: tuple[int, ...] = HEAVY_LANDMARKS,
) -> torch.Tensor:
    """The paper's per-landmark weights: 20 on 0-based 28, 29, 30 and 60..67 (``heavy``),
    1 elsewhere.

    Returns:
        ``(68,)`` tensor.
    """
    w = torch.ones(68, device=device, dtype=dtype or torch.get_default_dtype())
    w[list(heavy)] = 20.0
    return w


def landmark_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    robust: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """Weighted squared landmark distance ``sum_n w_n ||p_n - q_n||^2 / (B * 68)``.

    With ``robust = c > 0`` (a number, or ``(68,)`` / ``(B, 68)`` per point) the squared
    distance ``r^2`` becomes the Cauchy loss ``c^2 log(1 + r^2 / c^2)`` (the same near 0,
    growing only logarithmically beyond ``c`` pixels), so one badly placed point cannot bend
    the face.

    Args:
        pred: ``(B, 68, 2)`` projected model landmarks, 224-pixel units.
        target: ``(B, 68, 2)`` detected landmarks, same units.
        weights: ``(68,)`` or ``(B, 68)``; defaults to :func:`landmark_weights`.
        valid: ``(B, 68)`` visibility (bool or 0..1 confidence). It multiplies the weights, so an
            invisible point contributes zero; the denominator stays ``B * 68`` (the paper's
            formula with ``w_n = 0`` for those points), keeping the term's scale comparable.

    Returns:
        scalar tensor.
    """
    batch, n = pred.shape[:2]
    if weights is None:
        weights = landmark_weights(pred.device, pred.dtype)
    w = weights.to(pred).expand(batch, n)
    if valid is not None:
        w = w * valid.to(pred)
    sq = ((pred - target) ** 2).sum(dim=-1)
    if isinstance(robust, torch.Tensor) or robust > 0:
        c2 = torch.as_tensor(robust, dtype=sq.dtype, device=sq.device).clamp_min(1e-6) ** 2
        sq = c2 * torch.log1p(sq / c2)
    return (w * sq).sum() / (batch * n)


def perceptual_loss(emb_image: torch.Tensor, emb_render: torch.Tensor) -> torch.Tensor:
    """Identity (perceptual) loss ``1 - cos(f(I), f(R))`` of face-recognition embeddings.

    Args:
        emb_image: ``(B, D)`` embedding of the photo (usually computed once, no gradient needed).
        emb_render: ``(B, D)`` embedding of the render composited over the photo.

    Returns:
        scalar tensor: the mean over the batch, in 0..2.
    """
    a = torch.nn.functional.normalize(emb_image, dim=-1, eps=1e-12)
    b = torch.nn.functional.normalize(emb_render, dim=-1, eps=1e-12)
    return (1.0 - (a * b).sum(dim=-1)).mean()


def coefficient_regularization(
    id_coeff: torch.Tensor,
    exp_coeff: torch.Tensor,
    tex_coeff: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 0.8,
    delta: float = 1.7e-3,
) -> torch.Tensor:
    """Tikhonov prior on the 3DMM coefficients ``(a||id||^2 + b||exp||^2 + d||tex||^2) / B``.

    ``delta`` defaults to the paper's 1.7e-3; the released code uses 1.7e-2.

    Args:
        id_coeff: ``(B, Kid)``. exp_coeff: ``(B, Kexp)``. tex_coeff: ``(B, Ktex)``.

    Returns:
        scalar tensor.
    """
    batch = id_coeff.shape[0]
    total = alpha * (id_coeff**2).sum() + beta * (exp_coeff**2).sum() + delta * (tex_coeff**2).sum()
    return total / batch


def temporal_smoothness(
    exp_coeff: torch.Tensor, angles: torch.Tensor, trans: torch.Tensor
) -> torch.Tensor:
    """Squared acceleration of a batch of consecutive video frames: mean over the ``B - 2``
    inner frames of ``|dd exp|^2 + |dd angles in degrees|^2 + |dd trans in mm|^2`` with
    ``dd x[t] = x[t+1] - 2 x[t] + x[t-1]`` (steady motion costs nothing, jitter does; one
    coefficient unit, one degree and one millimetre cost the same).

    Args:
        exp_coeff: ``(B, Kexp)``; angles: ``(B, 3)`` radians; trans: ``(B, 3)`` scene units
            (100 mm), rows in time order.

    Returns:
        scalar (0 for fewer than 3 frames).
    """
    if exp_coeff.shape[0] < 3:
        return exp_coeff.new_zeros(())

    def dd(x: torch.Tensor) -> torch.Tensor:
        return (x[2:] - 2 * x[1:-1] + x[:-2]).pow(2).sum(-1)

    return (dd(exp_coeff) + dd(torch.rad2deg(angles)) + dd(100.0 * trans)).mean()


def lighting_regularization(gamma: torch.Tensor) -> torch.Tensor:
    """Pushes SH lighting towards white light: ``mean((gamma - mean over RGB)^2)``.

    Released code only (weight 10); the paper's configuration leaves it off. The constant 0.8
    ambient offset is the same for every channel, so raw ``gamma`` is used.

    Args:
        gamma: ``(B, 27)`` RGB x 9 SH coefficients (channel-major, as ``gamma.view(B, 3, 9)``).

    Returns:
        scalar tensor.
    """
    g = gamma.reshape(gamma.shape[0], 3, -1)
    return ((g - g.mean(dim=1, keepdim=True)) ** 2).mean()


def albedo_flatness_loss(albedo: torch.Tensor, skin_mask: torch.Tensor) -> torch.Tensor:
    """Albedo flatness: per-channel variance of the albedo over the skin-region vertices.

    Normalisation: population variance (divide by the number of skin vertices ``S``, as the
    released code does), summed over the 3 channels, then averaged over the batch::

        L = 1/B sum_b sum_c 1/S sum_{i in skin} (a_bic - mean_skin(a_bc))^2

    Args:
        albedo: ``(B, N, 3)`` per-vertex albedo in 0..1.
        skin_mask: ``(N,)`` bool, the model's skin region.

    Returns:
        scalar tensor (0 when the mask is empty).
    """
    skin = albedo[:, skin_mask.to(albedo.device).bool()]
    if skin.shape[1] == 0:
        return albedo.sum() * 0.0
    var = skin.var(dim=1, unbiased=False)  # (B, 3)
    return var.sum(dim=1).mean()


def photometric_mask(
    face_mask: torch.Tensor,
    attention: torch.Tensor | None = None,
    occlusion: torch.Tensor | None = None,
) -> torch.Tensor:
    """The photometric mask ``attention x face_mask x occlusion`` (missing factors are 1).

    Args:
        face_mask: ``(B, 1, H, W)`` rendered face coverage.
        attention: ``(B, 1, H, W)`` skin attention, or None.
        occlusion: ``(B, 1, H, W)`` 1 where the face is visible (not occluded), or None.

    Returns:
        ``(B, 1, H, W)`` detached mask.
    """
    m = face_mask
    if attention is not None:
        m = m * attention.to(m.dtype)
    if occlusion is not None:
        m = m * occlusion.to(m.dtype)
    return m.detach()

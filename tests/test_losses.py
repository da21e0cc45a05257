"""Hybrid loss terms against independent numpy evaluations of their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facerecon.errors import FaceReconError
from facerecon.losses import (
    HybridLossConfig,
    LossTermError,
    albedo_flatness_loss,
    coefficient_regularization,
    hybrid_loss,
    landmark_loss,
    landmark_weights,
    lighting_regularization,
    perceptual_loss,
    photometric_loss,
    photometric_mask,
)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _t(x: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64, requires_grad=grad)


# ---------------------------------------------------------------- photometric
def _photo_np(img, ren, mask, per_image=True):
    """Direct loops over images and pixels of the paper's definition."""
    B, _, H, W = img.shape
    per, num_all, den_all = [], 0.0, 0.0
    for b in range(B):
        num = 0.0
        for y in range(H):
            for x in range(W):
                d = img[b, :, y, x] - ren[b, :, y, x]
                num += math.sqrt(1e-6 + float(d @ d)) * mask[b, 0, y, x]
        den = mask[b, 0].sum()
        per.append(num / max(den, 1.0))
        num_all += num
        den_all += den
    return float(np.mean(per)) if per_image else num_all / max(den_all, 1.0)


def test_photometric_matches_numpy_definition():
    rng = _rng(1)
    img, ren = rng.random((2, 3, 5, 4)), rng.random((2, 3, 5, 4))
    mask = rng.random((2, 1, 5, 4))
    mask[1] *= 0.1  # second image: total mask < 1 -> denominator clamps to 1
    assert mask[1].sum() < 1.0
    got = photometric_loss(_t(img), _t(ren), _t(mask))
    assert got.item() == pytest.approx(_photo_np(img, ren, mask), rel=1e-12)
    got_b = photometric_loss(_t(img), _t(ren), _t(mask), per_image=False)
    assert got_b.item() == pytest.approx(_photo_np(img, ren, mask, False), rel=1e-12)
    # per-image and batch normalisation differ when the mask sums differ
    assert abs(got.item() - got_b.item()) > 1e-3


def test_photometric_zero_when_equal_and_weight_map_accepted():
    rng = _rng(2)
    img = _t(rng.random((1, 3, 6, 6)))
    weight_map = _t(np.full((1, 1, 6, 6), 0.25))  # DF-MVR style weights, (B,1,H,W)
    loss = photometric_loss(img, img.clone(), weight_map)
    assert loss.item() == pytest.approx(math.sqrt(1e-6), rel=1e-9)  # eps floor only
    # a 3D (B,H,W) mask is the same as (B,1,H,W)
    ren = _t(rng.random((1, 3, 6, 6)))
    a = photometric_loss(img, ren, weight_map)
    b = photometric_loss(img, ren, weight_map[:, 0])
    assert a.item() == b.item()


def test_photometric_gradients_and_mask_detached():
    rng = _rng(3)
    img = _t(rng.random((2, 3, 4, 4)))
    ren = _t(rng.random((2, 3, 4, 4)), grad=True)
    attn = _t(rng.random((2, 1, 4, 4)), grad=True)
    face = _t((rng.random((2, 1, 4, 4)) > 0.3).astype(float), grad=True)
    mask = attn * face  # carries a graph; the loss must not use it
    loss = photometric_loss(img, ren, mask)
    loss.backward()
    assert ren.grad is not None and torch.isfinite(ren.grad).all()
    assert ren.grad.abs().sum() > 0
    assert attn.grad is None and face.grad is None
    # finite gradient at I == R thanks to eps
    ren2 = img.clone().requires_grad_(True)
    photometric_loss(img, ren2, mask).backward()
    assert torch.isfinite(ren2.grad).all()
    assert ren2.grad.abs().max() == 0.0


def test_photometric_mask_product_is_detached():
    face = torch.ones(1, 1, 2, 2, requires_grad=True)
    attn = torch.full((1, 1, 2, 2), 0.5)
    occ = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    m = photometric_mask(face, attn, occ)
    assert not m.requires_grad
    assert m.flatten().tolist() == [0.5, 0.0, 0.5, 0.5]
    assert torch.equal(photometric_mask(face), face.detach())


# ---------------------------------------------------------------- landmarks
def test_landmark_weights_default():
    w = landmark_weights(dtype=torch.float64)
    assert w.shape == (68,) and w.dtype == torch.float64
    heavy = [28, 29, 30, *range(60, 68)]
    assert w[heavy].tolist() == [20.0] * 11
    assert float(w.sum()) == 57 * 1 + 11 * 20


def test_landmark_loss_matches_numpy():
    rng = _rng(4)
    pred, tgt = rng.random((3, 68, 2)) * 224, rng.random((3, 68, 2)) * 224
    w = np.ones(68)
    w[[28, 29, 30]] = 20
    w[60:68] = 20
    expect = sum(w[n] * np.sum((pred[b, n] - tgt[b, n]) ** 2) for b in range(3) for n in range(68))
    expect /= 3 * 68
    assert landmark_loss(_t(pred), _t(tgt)).item() == pytest.approx(expect, rel=1e-12)
    # visibility: dropped points contribute nothing, denominator unchanged
    valid = rng.random((3, 68)) > 0.5
    expect_v = sum(
        w[n] * valid[b, n] * np.sum((pred[b, n] - tgt[b, n]) ** 2)
        for b in range(3)
        for n in range(68)
    ) / (3 * 68)
    got_v = landmark_loss(_t(pred), _t(tgt), valid=torch.tensor(valid))
    assert got_v.item() == pytest.approx(expect_v, rel=1e-12)
    # explicit uniform weights
    uni = landmark_loss(_t(pred), _t(tgt), weights=torch.ones(68, dtype=torch.float64))
    assert uni.item() == pytest.approx(np.sum((pred - tgt) ** 2) / (3 * 68), rel=1e-12)


def test_landmark_loss_zero_and_gradient():
    rng = _rng(5)
    tgt = _t(rng.random((2, 68, 2)) * 224)
    assert landmark_loss(tgt.clone(), tgt).item() == 0.0
    pred = _t(rng.random((2, 68, 2)) * 224, grad=True)
    landmark_loss(pred, tgt).backward()
    assert torch.isfinite(pred.grad).all()
    # d/dp of w||p-q||^2/(B*68) = 2w(p-q)/(B*68)
    expect = 2 * landmark_weights(dtype=torch.float64)[None, :, None] * (pred - tgt) / 136
    assert torch.allclose(pred.grad, expect.detach())


# ---------------------------------------------------------------- perceptual
def test_perceptual_matches_numpy():
    rng = _rng(6)
    a, b = rng.normal(size=(4, 128)), rng.normal(size=(4, 128))
    cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert perceptual_loss(_t(a), _t(b)).item() == pytest.approx(np.mean(1 - cos), rel=1e-12)
    # scale invariance, zero when equal, 2 when opposite
    assert perceptual_loss(_t(a), _t(3 * a)).item() == pytest.approx(0.0, abs=1e-12)
    assert perceptual_loss(_t(a), _t(-a)).item() == pytest.approx(2.0, rel=1e-12)
    x = _t(b, grad=True)
    perceptual_loss(_t(a), x).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ---------------------------------------------------------------- regularisers
def test_coefficient_regularization_matches_numpy_and_deltas():
    rng = _rng(7)
    i, e, t = rng.normal(size=(2, 80)), rng.normal(size=(2, 64)), rng.normal(size=(2, 80))
    expect = (np.sum(i**2) + 0.8 * np.sum(e**2) + 1.7e-3 * np.sum(t**2)) / 2
    got = coefficient_regularization(_t(i), _t(e), _t(t))
    assert got.item() == pytest.approx(expect, rel=1e-12)
    code = coefficient_regularization(_t(i), _t(e), _t(t), delta=1.7e-2)
    assert code.item() - got.item() == pytest.approx((1.7e-2 - 1.7e-3) * np.sum(t**2) / 2)
    z = torch.zeros(2, 80, dtype=torch.float64, requires_grad=True)
    loss = coefficient_regularization(z, torch.zeros(2, 64), torch.zeros(2, 80))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(z.grad).all()


def test_lighting_regularization_matches_numpy():
    rng = _rng(8)
    g = rng.normal(size=(3, 27))
    r = g.reshape(3, 3, 9)  # channel-major: R = 0:9, G = 9:18, B = 18:27
    expect = np.mean((r - r.mean(axis=1, keepdims=True)) ** 2)
    assert lighting_regularization(_t(g)).item() == pytest.approx(expect, rel=1e-12)
    white = np.tile(rng.normal(size=(1, 9)), (1, 3))  # same 9 values for R, G and B
    assert lighting_regularization(_t(white)).item() == pytest.approx(0.0, abs=1e-15)
    x = _t(g, grad=True)
    lighting_regularization(x).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_albedo_flatness_matches_numpy():
    rng = _rng(9)
    alb = rng.random((2, 50, 3))
    skin = rng.random(50) > 0.4
    expect = np.mean([np.sum(np.var(alb[b, skin], axis=0)) for b in range(2)])  # ddof 0
    got = albedo_flatness_loss(_t(alb), torch.tensor(skin))
    assert got.item() == pytest.approx(expect, rel=1e-12)
    # only skin vertices matter
    alb2 = alb.copy()
    alb2[:, ~skin] = 7.0
    assert albedo_flatness_loss(_t(alb2), torch.tensor(skin)).item() == pytest.approx(expect)
    flat = np.broadcast_to(rng.random((2, 1, 3)), (2, 50, 3)).copy()
    assert albedo_flatness_loss(_t(flat), torch.tensor(skin)).item() == pytest.approx(0, abs=1e-15)
    x = _t(alb, grad=True)
    albedo_flatness_loss(x, torch.tensor(skin)).backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[:, ~skin].abs().max() == 0 and x.grad[:, skin].abs().sum() > 0


# ---------------------------------------------------------------- config and sum
def test_config_defaults_and_released_factory():
    p = HybridLossConfig()
    assert (p.w_photo, p.w_landmark, p.w_perceptual, p.w_coef, p.w_tex, p.w_light) == (
        1.9,
        1.6e-3,
        0.2,
        3e-4,
        5.0,
        0.0,
    )
    assert (p.alpha, p.beta, p.delta) == (1.0, 0.8, 1.7e-3)
    r = HybridLossConfig.released_code()
    assert (r.w_photo, r.w_landmark, r.w_perceptual, r.w_coef, r.w_tex, r.w_light) == (
        1.92,
        1.6e-3,
        0.2,
        3e-4,
        5.0,
        10.0,
    )
    assert r.delta == 1.7e-2 and r.alpha == 1.0 and r.beta == 0.8
    assert HybridLossConfig.paper() == p


def test_hybrid_loss_weights_and_sums_given_terms():
    terms = {"photo": torch.tensor(0.5), "landmark": torch.tensor(100.0), "coef": torch.tensor(2.0)}
    total, parts = hybrid_loss(terms, HybridLossConfig())
    assert set(parts) == set(terms)
    assert parts["photo"].item() == pytest.approx(0.95)
    assert parts["landmark"].item() == pytest.approx(0.16)
    assert parts["coef"].item() == pytest.approx(6e-4)
    assert total.item() == pytest.approx(0.95 + 0.16 + 6e-4)
    light = {"light": torch.tensor(1.0)}
    assert hybrid_loss(light, HybridLossConfig())[0].item() == 0.0
    assert hybrid_loss(light, HybridLossConfig.released_code())[0].item() == 10.0
    mixed = {"photo": torch.tensor(1.0), "coef": torch.tensor(1.0, dtype=torch.float64)}
    assert hybrid_loss(mixed)[0].dtype == torch.float64
    cfg = HybridLossConfig(extra={"mask": 2.0})
    assert hybrid_loss({"mask": torch.tensor(3.0)}, cfg)[0].item() == 6.0


def test_hybrid_loss_rejects_unknown_terms():
    with pytest.raises(LossTermError, match="unknown loss terms"):
        hybrid_loss({"photometric": torch.tensor(1.0)})
    with pytest.raises(FaceReconError):
        hybrid_loss({}, HybridLossConfig())
    with pytest.raises(LossTermError, match="shadow"):
        hybrid_loss({"photo": torch.tensor(1.0)}, HybridLossConfig(extra={"photo": 1.0}))


def test_hybrid_gradient_end_to_end_float32():
    torch.manual_seed(0)
    img = torch.rand(2, 3, 8, 8)
    ren = torch.rand(2, 3, 8, 8, requires_grad=True)
    ids = torch.randn(2, 80, requires_grad=True)
    terms = {
        "photo": photometric_loss(img, ren, torch.ones(2, 1, 8, 8)),
        "coef": coefficient_regularization(ids, torch.zeros(2, 64), torch.zeros(2, 80)),
    }
    total, _ = hybrid_loss(terms)
    assert total.dtype == torch.float32
    total.backward()
    assert torch.isfinite(ren.grad).all() and torch.isfinite(ids.grad).all()
    assert torch.allclose(ids.grad, 3e-4 * 2 * ids.detach() / 2)

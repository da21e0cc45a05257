"""Alignment to the 224 crop (facerecon.detect.align)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facerecon.detect.align import (
    DEFAULT_TEMPLATE_224,
    align,
    align_batch,
    crop_to_original,
    fit_scale_translation,
    five_points,
    template_from_model,
)


def _face_like_landmarks(rng, s=2.0, t=(300.0, 200.0)):
    base = rng.uniform(-40, 40, size=(68, 2))
    tm = np.asarray(DEFAULT_TEMPLATE_224)
    # put the five-point sources where a scaled template would be
    base[[36, 39]] = tm[0] + [[-5, 0], [5, 0]]
    base[[42, 45]] = tm[1] + [[-5, 0], [5, 0]]
    base[30], base[48], base[54] = tm[2], tm[3], tm[4]
    return base * s + np.asarray(t)


def test_fit_scale_translation_exact():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(5, 2)) * 30
    s, t = fit_scale_translation(src, 0.37 * src + [5.0, -7.0])
    assert s == pytest.approx(0.37, abs=1e-12)
    assert np.allclose(t, [5.0, -7.0], atol=1e-10)


def test_round_trip_and_template_fit():
    rng = np.random.default_rng(1)
    lm = _face_like_landmarks(rng)
    img = rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)
    a = align(img, lm)
    assert a.image.shape == (224, 224, 3) and a.lm68.shape == (68, 2)
    assert np.abs(a.transform.to_original(a.lm68) - lm).max() < 0.5
    assert np.abs(a.transform.to_original(a.lm68) - lm).max() < 1e-9
    # landmarks were built as a scaled template -> the 5 points land on it exactly
    assert np.abs(five_points(a.lm68) - DEFAULT_TEMPLATE_224).max() < 1e-9
    # 2x3 matrices are inverse of each other and agree with to_crop
    M, Minv = a.transform.matrix_to_crop, a.transform.matrix_to_original
    assert np.allclose(np.vstack([M, [0, 0, 1]]) @ np.vstack([Minv, [0, 0, 1]]), np.eye(3))
    assert np.allclose(lm @ M[:, :2].T + M[:, 2], a.lm68)
    # torch points keep their dtype
    pt = torch.tensor(lm[:3], dtype=torch.float32)
    assert a.transform.to_crop(pt).dtype == torch.float32


@pytest.mark.parametrize("scale", [3.0, 0.8, 0.15])
def test_crop_pixels_follow_transform(scale):
    """On a linear ramp every resampling is exact, so crop[q] == ramp(to_original(q))."""
    h, w = 900, 1200
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    gx, gy = 200.0 / w, 200.0 / h
    ramp = np.stack([20 + gx * xx, 20 + gy * yy, 20 + 0.5 * (gx * xx + gy * yy)], -1)
    img = np.rint(ramp).astype(np.uint8)
    tm = np.asarray(DEFAULT_TEMPLATE_224)
    lm = np.zeros((68, 2))
    five = (tm - 112) / scale + [w / 2, h / 2]
    lm[[36, 39]], lm[[42, 45]] = five[0], five[1]
    lm[30], lm[48], lm[54] = five[2], five[3], five[4]
    a = align(img, lm)
    q = np.stack(np.mgrid[0:224, 0:224][::-1], -1).reshape(-1, 2).astype(np.float64)
    p = a.transform.to_original(q)
    inside = a.valid.reshape(-1) & (p[:, 0] > 3 / scale) & (p[:, 0] < w - 1 - 3 / scale)
    inside &= (p[:, 1] > 3 / scale) & (p[:, 1] < h - 1 - 3 / scale)
    assert inside.sum() > 1000
    expect = 20 + np.stack([gx * p[:, 0], gy * p[:, 1], 0.5 * (gx * p[:, 0] + gy * p[:, 1])], -1)
    got = a.image.reshape(-1, 3)[inside].astype(np.float64)
    assert np.abs(got - expect[inside]).max() <= 1.6  # uint8 rounding of source and crop


def test_out_of_image_fill_and_valid():
    img = np.full((100, 100, 3), 200, np.uint8)
    lm = _face_like_landmarks(np.random.default_rng(2), s=0.5, t=(0.0, 0.0))
    a = align(img, lm, fill=0)
    assert not a.valid.all() and a.valid.any()
    # bilinear edge pixels blend at most half of the photo in
    assert (a.image[~a.valid] <= 100).all() and (a.image[~a.valid] == 0).mean() > 0.95
    assert (a.image[a.valid] > 150).mean() > 0.95


def test_size_and_batch():
    rng = np.random.default_rng(3)
    lms = np.stack([_face_like_landmarks(rng, s=1.5), _face_like_landmarks(rng, s=2.5)])
    img = rng.integers(0, 255, (700, 900, 3), dtype=np.uint8)
    crops, lm_c, trs = align_batch([img, img], lms, size=112)
    assert crops.shape == (2, 112, 112, 3) and lm_c.shape == (2, 68, 2) and len(trs) == 2
    for i in range(2):
        assert np.abs(trs[i].to_original(lm_c[i]) - lms[i]).max() < 1e-9
    # half-size crop: the 5 points land on the 224 template scaled about pixel edges
    expect = (DEFAULT_TEMPLATE_224 + 0.5) / 2 - 0.5
    assert np.abs(five_points(lm_c[0]) - expect).max() < 1e-9


def test_crop_to_original_pastes_back():
    rng = np.random.default_rng(4)
    lm = _face_like_landmarks(rng)
    img = np.zeros((600, 800, 3), np.uint8)
    a = align(img, lm)
    white = np.full((224, 224, 3), 255, np.uint8)
    back = crop_to_original(white, a.transform, background=img, mask=np.ones((224, 224)))
    c = a.transform.to_original(np.array([112.0, 112.0])).round().astype(int)
    assert back[c[1], c[0]].min() == 255 and back[0, 0].max() == 0


def test_template_constants_match_face_model(model):
    tm = template_from_model(model)
    assert np.abs(tm - DEFAULT_TEMPLATE_224).max() < 0.01


def test_inside_photo_matches_a_warped_photo_sized_mask():
    """The analytic valid mask is the one a warped all-white photo gives, up to the corner
    pixels and the pre-shrink's rounding along the border."""
    from facerecon.detect.align import _warp, inside_photo

    rng = np.random.default_rng(0)
    differ = total = 0
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(50, 1500, 2))
        s, t = float(rng.uniform(0.05, 3.0)), rng.uniform(-300, 300, 2)
        white = np.full((h, w, 3), 255, np.uint8)
        warped = _warp(white, s, t, 224, 0)[..., 0] > 127
        mask = inside_photo(s, t, 224, (h, w))
        differ += int((warped != mask).sum())
        total += mask.size
        assert mask.any() == warped.any()
    assert differ / total < 2e-4

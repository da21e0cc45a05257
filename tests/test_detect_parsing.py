"""Parse masks and DF-MVR weight maps (facerecon.detect.parsing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facerecon.detect.parsing import (
    dfmvr_weight_map,
    one_hot,
    parse_from_landmarks,
    parse_from_render,
)
from facerecon.labels import Region


def _pts(path):
    vals = path.read_text().split("{", 1)[1].split("}", 1)[0].split()
    return np.asarray(vals, dtype=np.float64).reshape(68, 2) - 1.0


@pytest.fixture(scope="module")
def takeo_mask(faces_68pt):
    lm = _pts(faces_68pt / "takeo.pts")
    return lm, parse_from_landmarks(lm, (225, 150))


def test_regions_present_and_ordered(takeo_mask):
    lm, m = takeo_mask
    assert m.shape == (225, 150) and m.dtype == np.int64
    cy, cx = {}, {}
    for r in Region:
        if r == Region.OTHER:
            assert not (m == r).any()
            continue
        ys, xs = np.nonzero(m == r)
        assert len(ys) > 0, r.name
        cy[r], cx[r] = ys.mean(), xs.mean()
    brow = (cy[Region.LEFT_BROW] + cy[Region.RIGHT_BROW]) / 2
    eye = (cy[Region.LEFT_EYE] + cy[Region.RIGHT_EYE]) / 2
    assert brow < eye < cy[Region.NOSE] < cy[Region.UPPER_LIP] < cy[Region.LOWER_LIP]
    # subject's right eye/brow (iBUG 36-41, 17-21) is on the image left
    assert cx[Region.RIGHT_EYE] < cx[Region.LEFT_EYE]
    assert cx[Region.RIGHT_BROW] < cx[Region.LEFT_BROW]
    # eye region sits on its landmarks; the image corners are background
    c = lm[36:42].mean(0).round().astype(int)
    assert m[c[1], c[0]] == Region.RIGHT_EYE
    assert m[0, 0] == m[-1, -1] == Region.BACKGROUND
    # face region is bounded by the chin (point 8) and the skin covers most of the jaw hull
    assert np.nonzero(m)[0].max() <= lm[8, 1] + 1.5
    face_px = (m != Region.BACKGROUND).sum()
    assert 0.15 < face_px / m.size < 0.6


def test_parse_from_render_picks_largest_bary():
    tri = torch.tensor([[0, 1, 2], [2, 1, 3]])
    vl = torch.tensor([int(Region.NOSE), int(Region.SKIN), int(Region.LEFT_EYE), int(Region.OTHER)])
    fi = torch.tensor([[[-1, 0], [1, 1]]])
    bary = torch.tensor([[[[1, 0, 0], [0.1, 0.2, 0.7]], [[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]]])
    out = parse_from_render(fi, bary, tri, vl)
    expect = [[Region.BACKGROUND, Region.LEFT_EYE], [Region.LEFT_EYE, Region.SKIN]]
    assert out.shape == (1, 2, 2) and out.tolist() == [[[int(v) for v in r] for r in expect]]


def test_one_hot_numpy_and_torch(takeo_mask):
    _, m = takeo_mask
    oh = one_hot(m)
    assert oh.shape == (10, *m.shape) and np.allclose(oh.sum(0), 1)
    assert np.array_equal(oh.argmax(0), m)
    t = one_hot(torch.from_numpy(m)[None])
    assert t.shape == (1, 10, *m.shape) and torch.equal(t.argmax(1)[0], torch.from_numpy(m))


def test_weight_map_values_and_dilation():
    lab = np.zeros((224, 224), np.int64)
    lab[50:150, 50:150] = Region.SKIN
    lab[100, 100] = Region.NOSE
    w = dfmvr_weight_map(lab)
    assert set(np.unique(w)) == {32.0, 128.0, 254.0}
    assert (w == 254).sum() == 20 * 20  # a single feature pixel dilated by a 20x20 square
    assert w[60, 60] == 128 and w[10, 10] == 32
    # the dilation scales with the mask size
    big = np.kron(lab, np.ones((2, 2), np.int64))
    big[:] = Region.SKIN
    big[200, 200] = Region.NOSE
    assert (dfmvr_weight_map(big) == 254).sum() == 40 * 40
    assert dfmvr_weight_map(lab, normalise=True).max() == pytest.approx(254 / 255)
    assert dfmvr_weight_map(np.stack([lab, lab])).shape == (2, 224, 224)

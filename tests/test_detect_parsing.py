"""Parse masks and DF-MVR weight maps (facerecon.detect.parsing)."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import torch

from facerecon.detect import DetectorConfig, make_detector
from facerecon.detect import parsing as P
from facerecon.detect.parsing import (
    dfmvr_weight_map,
    one_hot,
    parse_from_landmarks,
    parse_from_render,
)
from facerecon.io import read_pts
from facerecon.labels import FEATURE_REGIONS, Region


@pytest.fixture(scope="module")
def takeo_mask(faces_68pt):
    lm = read_pts(faces_68pt / "takeo.pts")
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


# ------------------------------------------------------------------ 478 MediaPipe points


def _edges(path, closed=False):
    pairs = list(itertools.pairwise(path))
    if closed:
        pairs.append((path[-1], path[0]))
    return {frozenset(p) for p in pairs}


def test_mesh_contours_match_mediapipe_connections():
    """The committed MP_* rings are exactly MediaPipe's contour edge lists, chained."""
    conn = pytest.importorskip("mediapipe.python.solutions.face_mesh_connections")

    def mp(name):
        return {frozenset(e) for e in getattr(conn, name)}

    assert _edges(P.MP_FACE_OVAL, closed=True) == mp("FACEMESH_FACE_OVAL")
    assert _edges(P.MP_RIGHT_EYE, closed=True) == mp("FACEMESH_RIGHT_EYE")
    assert _edges(P.MP_LEFT_EYE, closed=True) == mp("FACEMESH_LEFT_EYE")
    for ring, name in ((P.MP_RIGHT_BROW, "RIGHT"), (P.MP_LEFT_BROW, "LEFT")):
        lower, upper = ring[:5], ring[5:][::-1]  # outer end first in both
        assert _edges(lower) | _edges(upper) == mp(f"FACEMESH_{name}_EYEBROW")
    lips = [P.MP_UPPER_LIP_OUTER, P.MP_LOWER_LIP_OUTER, P.MP_UPPER_LIP_INNER, P.MP_LOWER_LIP_INNER]
    assert set().union(*map(_edges, lips)) == mp("FACEMESH_LIPS")
    nose = _edges(P.MP_NOSE_RIDGE) | _edges(P.MP_NOSE_BASE, closed=True)
    assert nose == mp("FACEMESH_NOSE")


@pytest.fixture(scope="module")
def mesh_faces(photos_68pt):
    """MediaPipe detections on the 300-W photos: name -> (mesh (478, 3), annotation, (H, W))."""
    det = make_detector(DetectorConfig(backend="mediapipe"))
    out = {}
    for n, (im, gt) in photos_68pt.items():
        faces = det.detect(im, all_faces=True)
        assert faces, n
        face = min(faces, key=lambda f: np.linalg.norm(f.lm68.mean(0) - gt.mean(0)))
        out[n] = (face.mp478, gt, im.shape[:2])
    det.close()
    return out


def _centroid(m, r):
    ys, xs = np.nonzero(m == r)
    assert len(ys) > 0, r.name
    return np.array([xs.mean(), ys.mean()])


def test_parse_from_mesh_vs_68(mesh_faces):
    """478-point masks on real photos agree with the 68-point masks of the hand annotation."""
    feats = [int(r) for r in FEATURE_REGIONS]
    for n, (mesh, gt, hw) in mesh_faces.items():
        m = parse_from_landmarks(mesh, hw)
        assert m.shape == hw and m.dtype == np.int64
        assert set(np.unique(m)) == set(range(10)), n  # every label, never OTHER
        assert np.array_equal(parse_from_landmarks(mesh[:, :2], hw), m)
        m68 = parse_from_landmarks(gt, hw)
        face, face68 = m > 0, m68 > 0
        iou = (face & face68).sum() / (face | face68).sum()
        # Measured: einstein 0.75, breakingbad 0.83, takeo 0.92.
        assert iou > 0.7, (n, iou)
        ratio = np.isin(m, feats).sum() / np.isin(m68, feats).sum()
        assert 0.7 < ratio < 1.5, (n, ratio)  # measured 0.98, 1.04, 1.21
        # Order along the face's own axes (breakingbad is turned and rolled).
        ex = (gt[45] - gt[36]) / np.linalg.norm(gt[45] - gt[36])
        down = np.array([-ex[1], ex[0]])
        c = {r: _centroid(m, r) for r in Region if r not in (Region.BACKGROUND, Region.OTHER)}
        d = {r: float(v @ down) for r, v in c.items()}
        brow = (d[Region.LEFT_BROW] + d[Region.RIGHT_BROW]) / 2
        eye = (d[Region.LEFT_EYE] + d[Region.RIGHT_EYE]) / 2
        assert brow < eye < d[Region.NOSE] < d[Region.UPPER_LIP] < d[Region.LOWER_LIP], n
        assert d[Region.UPPER_LIP] < d[Region.INNER_MOUTH] < d[Region.LOWER_LIP], n
        assert c[Region.RIGHT_EYE] @ ex < c[Region.LEFT_EYE] @ ex, n
        assert c[Region.RIGHT_BROW] @ ex < c[Region.LEFT_BROW] @ ex, n
        # Eye pixels lie in the annotated eye's box (+5% of the eye-corner distance).
        iod = np.linalg.norm(gt[45] - gt[36])
        for r, idx in ((Region.RIGHT_EYE, slice(36, 42)), (Region.LEFT_EYE, slice(42, 48))):
            ys, xs = np.nonzero(m == r)
            lo, hi = gt[idx].min(0) - 0.05 * iod, gt[idx].max(0) + 0.05 * iod
            inside = (xs >= lo[0]) & (xs <= hi[0]) & (ys >= lo[1]) & (ys <= hi[1])
            assert inside.mean() > 0.95, (n, r.name, inside.mean())  # measured >= 0.98


def test_mesh_face_polygon_covers_the_nose_on_a_turned_face(mesh_faces):
    """The silhouette hull keeps breakingbad's 3/4-view nose tip; the fixed oval ring does not."""
    mesh = mesh_faces["breakingbad"][0]
    tip = mesh[4, :2]
    hull = P.mesh_face_polygon(mesh).astype(np.float32)
    oval = mesh[list(P.MP_FACE_OVAL), :2].astype(np.float32)
    assert cv2.pointPolygonTest(hull, tuple(map(float, tip)), False) >= 0
    assert cv2.pointPolygonTest(oval, tuple(map(float, tip)), False) < 0


def test_parse_from_landmarks_rejects_other_shapes():
    with pytest.raises(ValueError, match=r"\(68, 2\) or \(478, 2\|3\)"):
        parse_from_landmarks(np.zeros((100, 2)), 64)

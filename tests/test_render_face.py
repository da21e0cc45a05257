"""Mean-face render in the paper's camera: silhouette size/centre and landmark placement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facerecon.detect.parsing import parse_from_landmarks, parse_from_render
from facerecon.labels import Region
from facerecon.render import CameraConfig, render


@pytest.fixture(scope="module")
def mean_render(model):
    verts = model.mean_shape[None].to(torch.float32)
    albedo = model.tex_mean[None].to(torch.float32)
    zero = torch.zeros(1, 3)
    out = render(verts, albedo, model.triangles, zero, zero, torch.zeros(1, 27), CameraConfig())
    return model, verts, out


def test_mean_face_silhouette_centred_and_sized(mean_render):
    _, _, out = mean_render
    mask = out.mask[0, 0] > 0
    rows, cols = mask.nonzero(as_tuple=True)
    width = (cols.max() - cols.min() + 1).item()
    height = (rows.max() - rows.min() + 1).item()
    # ~150 mm wide face at 10 units (1000 mm) with focal 1015 px: ~130-165 px
    assert 130 <= width <= 165, width
    assert 140 <= height <= 215, height
    # the silhouette spans the projected vertex extent (pixel centres inside it)
    u = out.uv[0, :, 0]
    assert cols.min().item() == int(torch.ceil(u.min())) and cols.max().item() == int(u.max())
    cx = (cols.min() + cols.max()).item() / 2
    cy = (rows.min() + rows.max()).item() / 2
    assert abs(cx - 111.5) < 6, cx
    assert abs(cy - 111.5) < 15, cy
    # a plausible Lambertian image: ambient-lit albedo stays in 0..1 on the face
    img = out.image[0][:, mask]
    assert img.min() >= 0 and img.max() <= 1.0 and img.mean() > 0.2


def test_mean_face_landmarks_inside_and_ordered(mean_render):
    model, _, out = mean_render
    lm = out.uv[0, model.landmarks68]  # (68, 2)
    mask = out.mask[0, 0] > 0
    # every landmark falls on the rendered face (allowing 2 px for contour points)
    dil = torch.nn.functional.max_pool2d(mask[None, None].float(), 5, 1, 2)[0, 0] > 0
    r = lm[:, 1].round().long().clamp(0, 223)
    c = lm[:, 0].round().long().clamp(0, 223)
    assert dil[r, c].all()
    # inner points strictly inside, except the inner-mouth ones (60-67: the mouth is a hole)
    assert mask[r[17:60], c[17:60]].all()
    eyes_v = lm[36:48, 1].mean()
    nose_v = lm[30, 1]
    mouth_v = lm[48:68, 1].mean()
    chin_v = lm[8, 1]
    assert eyes_v < nose_v < mouth_v < chin_v  # image y grows downwards
    # 36-41 is the subject's right eye: image left
    assert lm[36:42, 0].mean() < 112 < lm[42:48, 0].mean()
    # the nose tip is visible: the z-buffer depth there equals the vertex's own depth
    tip = model.landmarks68[30]
    d_vertex = 10.0 - model.mean_shape[tip, 2].item() / 100.0
    d_pixel = out.depth[0, 0, r[30], c[30]].item()
    assert abs(d_pixel - d_vertex) < 0.02  # 2 mm (pixel centre vs vertex)


def test_parse_from_render_regions_on_landmarks(mean_render):
    """bfm-lite's per-vertex labels, rasterized for the mean face, sit where its landmarks are."""
    model, _, out = mean_render
    lab = parse_from_render(out.face_idx, out.bary, model.triangles, model.vertex_labels)
    lab = lab[0].numpy()
    lm = out.uv[0, model.landmarks68].numpy()  # (68, 2)
    iod = float(np.linalg.norm(lm[45] - lm[36]))
    assert np.array_equal(lab != Region.BACKGROUND, out.mask[0, 0].numpy() > 0)
    assert not (lab == Region.OTHER).any()

    def pixels(r):
        ys, xs = np.nonzero(lab == r)
        assert len(ys) > 50, r.name
        return np.stack([xs, ys], axis=1).astype(np.float64)

    for r, idx in ((Region.RIGHT_EYE, slice(36, 42)), (Region.LEFT_EYE, slice(42, 48))):
        px = pixels(r)
        # Measured: centroid 0.4 px from the eye landmarks' mean.
        assert np.linalg.norm(px.mean(0) - lm[idx].mean(0)) < 0.05 * iod, r.name
        lo, hi = lm[idx].min(0) - 2.0, lm[idx].max(0) + 2.0
        assert ((px >= lo) & (px <= hi)).all(1).mean() > 0.9, r.name
    for r, idx, eye in (
        (Region.RIGHT_BROW, slice(17, 22), slice(36, 42)),
        (Region.LEFT_BROW, slice(22, 27), slice(42, 48)),
    ):
        c = pixels(r).mean(0)
        assert c[1] < lm[eye, 1].min(), r.name
        assert lm[idx, 0].min() < c[0] < lm[idx, 0].max(), r.name
    nose = pixels(Region.NOSE).mean(0)
    tip = lm[30].round().astype(int)
    assert lab[tip[1], tip[0]] == Region.NOSE
    assert lm[27, 1] < nose[1] < lm[33, 1] and abs(nose[0] - lm[30, 0]) < 3.0
    upper, lower = pixels(Region.UPPER_LIP).mean(0), pixels(Region.LOWER_LIP).mean(0)
    assert lm[51, 1] < upper[1] < lm[62, 1]  # outer top .. inner top of the upper lip
    assert lm[66, 1] < lower[1] < lm[57, 1]  # inner bottom .. outer bottom of the lower lip
    for c in (upper, lower):
        assert lm[48, 0] < c[0] < lm[54, 0]
    assert lab[0, 0] == lab[-1, -1] == lab[0, -1] == lab[-1, 0] == Region.BACKGROUND
    # Region by region it overlaps the polygon parse of its own projected landmarks.
    # Measured IoU: eyes 0.72-0.75, brows 0.67, nose 0.56, upper lip 0.73, lower lip 0.80.
    m68 = parse_from_landmarks(lm, 224)
    bounds = {Region.NOSE: 0.45, Region.LEFT_BROW: 0.5, Region.RIGHT_BROW: 0.5}
    for r in (*bounds, Region.LEFT_EYE, Region.RIGHT_EYE, Region.UPPER_LIP, Region.LOWER_LIP):
        a, b = lab == r, m68 == r
        assert (a & b).sum() / (a | b).sum() > bounds.get(r, 0.6), r.name

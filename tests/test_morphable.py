"""Tests of facerecon.morphable: bfm-lite geometry, scaling, io, dtype/device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facerecon.errors import FaceReconError, ModelFileError
from facerecon.geometry import face_normals, vertex_normals
from facerecon.labels import Region
from facerecon.morphable import MorphableModel, load_face_model, load_npz
from facerecon.morphable.mesh import edge_lengths, is_consistently_oriented, undirected_edges


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("facerecon_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACERECON_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def bfm(cache) -> MorphableModel:
    return load_face_model("bfm-lite")


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def test_bfm_lite_shapes_and_dtypes(bfm, cache):
    n = bfm.n_vertices
    lay = bfm.layout
    assert (lay.n_id, lay.n_exp, lay.n_tex) == (40, 10, 16)
    assert 12_000 <= n <= 20_000
    assert bfm.mean_shape.shape == (n, 3) and bfm.mean_shape.dtype == torch.float32
    assert bfm.id_basis.shape == (n, 3, 40) and bfm.exp_basis.shape == (n, 3, 10)
    assert bfm.tex_basis.shape == (n, 3, 16)
    assert bfm.triangles.dtype == torch.int64 and bfm.landmarks68.shape == (68,)
    assert bfm.skin_mask.dtype == torch.bool and bfm.front_mask.shape == (n,)
    b = 3
    v, a = bfm(torch.zeros(b, 40), torch.zeros(b, 10), torch.zeros(b, 16))
    assert v.shape == (b, n, 3) and a.shape == (b, n, 3)
    torch.testing.assert_close(v[1], bfm.mean_shape)
    # cached file exists and a second load is a plain read
    from facerecon.morphable.bfm_lite import VERSION

    assert (cache / f"{VERSION}.npz").is_file()


def test_bfm_lite_mesh_manifold_and_oriented(bfm):
    v, tri = _np(bfm.mean_shape).astype(np.float64), _np(bfm.triangles)
    _, counts = undirected_edges(tri)
    assert counts.max() <= 2
    assert is_consistently_oriented(tri)
    # no unused vertex but the nostril cavities' (left out of the triangulation, kept so that
    # vertex indices stay those of v1)
    unused = np.setdiff1d(np.arange(len(v)), tri)
    np.testing.assert_array_equal(unused, bfm.meta["untriangulated_vertices"])
    lm = _np(bfm.landmarks68)
    assert 50 < len(unused) < 200 and not np.isin(lm, unused).any()
    near = np.linalg.norm(v[unused] - v[lm[30]], axis=1) < 30
    assert near.mean() > 0.8
    # normals point out of the face (+z) around the nose tip and on the forehead / cheeks
    vn = vertex_normals(v, tri)
    assert vn[lm[30], 2] > 0.8
    fn = face_normals(v, tri)
    centre_faces = np.abs(v[tri].mean(1)[:, 0]) < 40
    assert (fn[centre_faces, 2] > 0).mean() > 0.95
    el = edge_lengths(v, tri)
    assert np.median(el) < 2.5
    assert el.max() < 25.0
    assert (el.max(axis=1) > 8.0).mean() < 0.02


def test_bfm_lite_nose_does_not_fold(bfm):
    """The report's dark speckles around the nostrils were folded triangles: v1's triangulation
    zigzagged between the nostril cavities and the skin of the nose tip in front of them (208
    folded triangles on the mean shape, 204-231 on random faces). v2 leaves the cavity vertices
    out of the triangulation: no fold on the mean shape, few on random faces."""
    from facerecon.morphable.bfm_lite import BfmLiteConfig, build_bfm_lite
    from facerecon.morphable.mesh import folded_triangles

    v, tri = _np(bfm.mean_shape).astype(np.float64), _np(bfm.triangles)
    assert folded_triangles(v, tri).sum() == 0
    g = torch.Generator().manual_seed(0)
    shapes = _np(bfm.shape(torch.randn(8, 40, generator=g), torch.randn(8, 10, generator=g)))
    counts = [int(folded_triangles(s.astype(np.float64), tri).sum()) for s in shapes]
    assert max(counts) <= 20 and sum(counts) <= 50, counts
    # the same check on the v1 triangulation (no cavity vertices left out) fails
    v1 = build_bfm_lite(config=BfmLiteConfig(pit_rounds=0))
    np.testing.assert_allclose(v1["mean_shape"], v, atol=1e-4)  # same vertices, same order
    assert folded_triangles(v, v1["triangles"]).sum() > 150


def test_bfm_lite_no_triangle_bridges_the_lips(bfm):
    # open the jaw with the expression component that separates the lips most; no triangle may
    # stretch across the slit (edges would grow by the opening)
    lm = _np(bfm.landmarks68)
    e = _np(bfm.exp_basis).astype(np.float64)
    gap = e[lm[66], 1] - e[lm[62], 1]
    k = int(np.argmax(np.abs(gap)))
    coeff = np.zeros(e.shape[-1])
    coeff[k] = 3.0 * np.sign(gap[k]) * -1.0  # lower lip moves down
    v0 = _np(bfm.mean_shape).astype(np.float64)
    v1 = v0 + e @ coeff
    opening = (v1[lm[62], 1] - v1[lm[66], 1]) - (v0[lm[62], 1] - v0[lm[66], 1])
    assert opening > 5.0  # the mouth really opens by millimetres
    tri = _np(bfm.triangles)
    stretch = edge_lengths(v1, tri).max(1) - edge_lengths(v0, tri).max(1)
    assert stretch.max() < 0.5 * opening


def test_bfm_lite_landmarks_and_size(bfm):
    v = _np(bfm.mean_shape).astype(np.float64)
    lm = v[_np(bfm.landmarks68)]
    # nose tip is (nearly) the most forward point
    assert lm[30, 2] > v[:, 2].max() - 3.0
    assert abs(lm[30, 0]) < 2.0
    # subject's right eye (36..41) on -x, eyes above the nose tip, mouth below
    assert lm[36:42, 0].max() < 0 < lm[42:48, 0].min()
    assert lm[36:48, 1].min() > lm[30, 1] > lm[48:68, 1].max()
    assert lm[19, 1] > lm[37, 1] and lm[8, 1] < lm[57, 1]
    iod_outer = np.linalg.norm(lm[45] - lm[36])
    iod_pupil = np.linalg.norm(lm[42:48].mean(0) - lm[36:42].mean(0))
    assert 80.0 < iod_outer < 100.0
    assert 55.0 < iod_pupil < 70.0
    width = v[:, 0].max() - v[:, 0].min()
    assert 130.0 < width < 160.0
    height = v[:, 1].max() - v[:, 1].min()
    assert 150.0 < height < 200.0
    # centred on the centroid of the mean face
    np.testing.assert_allclose(v.mean(0), 0.0, atol=1e-3)


def test_bfm_lite_labels_and_masks(bfm):
    labels = _np(bfm.vertex_labels)
    lm = _np(bfm.landmarks68)
    counts = np.bincount(labels, minlength=len(Region))
    for r in (
        Region.SKIN,
        Region.LEFT_BROW,
        Region.RIGHT_BROW,
        Region.LEFT_EYE,
        Region.RIGHT_EYE,
        Region.NOSE,
        Region.UPPER_LIP,
        Region.LOWER_LIP,
        Region.OTHER,
    ):
        assert counts[r] > 30, r
    assert counts[Region.BACKGROUND] == 0 and counts[Region.INNER_MOUTH] == 0
    assert labels[lm[30]] == Region.NOSE
    assert labels[lm[51]] == Region.UPPER_LIP and labels[lm[57]] == Region.LOWER_LIP
    assert labels[lm[19]] == Region.RIGHT_BROW and labels[lm[24]] == Region.LEFT_BROW
    skin, front = _np(bfm.skin_mask), _np(bfm.front_mask)
    assert (labels[skin] == Region.SKIN).all()
    assert 0.4 < skin.mean() < 0.85 and 0.6 < front.mean() < 0.95
    assert front[lm[17:68]].all()
    ft = _np(bfm.front_triangles)
    assert front[ft].all() and len(ft) < len(bfm.triangles)


def test_coefficient_scaling_plausible(bfm):
    g = torch.Generator().manual_seed(0)
    b = 64
    v0 = bfm.mean_shape
    vid = bfm.shape(torch.randn(b, 40, generator=g), torch.zeros(b, 10))
    disp = (vid - v0).norm(dim=-1)  # (B, N) mm
    rms = disp.pow(2).mean().sqrt().item()
    assert 2.0 < rms < 15.0, rms  # identity varies faces by millimetres, not metres
    three_sd = bfm.shape(torch.full((1, 40), 3.0), torch.zeros(1, 10)) - v0
    assert 5.0 < three_sd.norm(dim=-1).max().item() < 100.0
    vexp = bfm.shape(torch.zeros(b, 40), torch.randn(b, 10, generator=g))
    erms = (vexp - v0).norm(dim=-1).pow(2).mean().sqrt().item()
    assert 0.5 < erms < 10.0, erms
    alb = bfm.texture(torch.randn(b, 16, generator=g))
    assert 0.02 < alb.std(dim=0).mean().item() < 0.2
    inside = ((alb > 0) & (alb < 1)).float().mean().item()
    assert inside > 0.99


def test_save_load_round_trip_exact(bfm, tmp_path):
    path = bfm.save(tmp_path / "m.npz")
    back = load_npz(path)
    assert back.name == bfm.name and back.layout == bfm.layout
    for key, t in bfm.state_dict().items():
        assert torch.equal(back.state_dict()[key], t), key
    assert back.meta["version"] == bfm.meta["version"]
    again = load_face_model(str(path))
    assert torch.equal(again.id_basis, bfm.id_basis)


def test_float64_and_device(bfm):
    m = load_face_model("bfm-lite", device="cpu", dtype=torch.float64)
    assert m.mean_shape.dtype == torch.float64 and m.triangles.dtype == torch.int64
    idc = torch.randn(2, 40, dtype=torch.float64, requires_grad=True)
    v, a = m(idc, torch.zeros(2, 10, dtype=torch.float64), torch.zeros(2, 16, dtype=torch.float64))
    assert v.dtype == torch.float64 and a.dtype == torch.float64
    # the model is linear: d v / d id_coeff is the basis
    v.sum().backward()
    torch.testing.assert_close(idc.grad[0], m.id_basis.sum(dim=(0, 1)))
    torch.testing.assert_close(
        v.float(), bfm.shape(idc.detach().float(), torch.zeros(2, 10)), rtol=1e-5, atol=1e-3
    )


def test_errors_are_user_facing(cache, tmp_path):
    with pytest.raises(FaceReconError):
        load_face_model("no-such-model")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(ModelFileError):
        load_face_model(str(bad))
    with pytest.raises(ModelFileError):
        load_face_model("bfm09")

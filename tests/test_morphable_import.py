"""bfm09 converter on a synthetic BFM09-layout file set; ICT loader in mm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.io import savemat
from scipy.spatial import Delaunay

from facerecon.errors import ModelFileError
from facerecon.morphable import import_bfm09, load_face_model
from facerecon.morphable.bfm09 import read_exp_pca
from facerecon.morphable.ict import convert_ict, import_ict
from facerecon.morphable.mesh import is_consistently_oriented, undirected_edges


@pytest.fixture(scope="module")
def face_points(tmp_path_factory) -> np.ndarray:
    """Mean face (mm) and landmarks of bfm-lite, thinned: a realistic synthetic source."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACERECON_CACHE", str(tmp_path_factory.mktemp("cache")))
        m = load_face_model("bfm-lite")
    v = m.mean_shape.double().numpy()
    lm = m.landmarks68.numpy()
    rng = np.random.default_rng(1)
    others = rng.choice(np.setdiff1d(np.arange(len(v)), lm), 400, replace=False)
    idx = np.concatenate([lm, others])
    return v[idx]  # (468, 3): first 68 are the landmarks


@pytest.fixture(scope="module")
def bfm09_files(tmp_path_factory, face_points):
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("bfm09")
    front_pts = face_points  # the 468 "front" vertices, in mm
    n_front = len(front_pts)
    # full model: front vertices + 60 extra (ears/neck), shuffled; 30 of the extras are not in
    # the expression model
    n_full = n_front + 60
    full = np.concatenate([front_pts, rng.normal(0, 50, (60, 3)) + np.array([0, 0, -50])])
    perm = rng.permutation(n_full)  # position in BFM of each of our points
    bfm_xyz = np.zeros((n_full, 3))
    bfm_xyz[perm] = full * 1000.0 + [5000.0, -3000.0, 40000.0]  # µm, off-centre
    n_exp_v = n_full - 30
    exp_members = np.concatenate([np.arange(n_front), n_front + np.arange(30)])  # our points
    exp_order = rng.permutation(n_exp_v)
    trim = perm[exp_members[exp_order]]  # BFM vertex of each expression vertex (0-based)
    # front idx: position in the expression list of each front point, in front order
    where = np.empty(n_exp_v, dtype=np.int64)
    where[exp_order] = np.arange(n_exp_v)
    front_idx = where[np.arange(n_front)]

    k_shape, k_exp = 90, 79
    shape_pc = np.linalg.qr(rng.normal(size=(3 * n_full, k_shape)))[0]
    shape_ev = np.linspace(9e4, 1e4, k_shape)  # µm
    tex_pc = np.linalg.qr(rng.normal(size=(3 * n_full, k_shape)))[0]
    tex_ev = np.linspace(400, 50, k_shape)
    tex_mu = rng.uniform(60, 200, 3 * n_full)
    savemat(
        d / "01_MorphableModel.mat",
        {
            "shapeMU": bfm_xyz.reshape(-1, 1),
            "shapePC": shape_pc,
            "shapeEV": shape_ev.reshape(-1, 1),
            "texMU": tex_mu.reshape(-1, 1),
            "texPC": tex_pc,
            "texEV": tex_ev.reshape(-1, 1),
        },
    )
    exp_pc = rng.normal(0, 0.01, (3 * n_exp_v, k_exp)).astype(np.float32)
    with open(d / "Exp_Pca.bin", "wb") as f:
        np.array([k_exp], dtype="<i4").tofile(f)
        np.zeros(3 * n_exp_v, dtype="<f4").tofile(f)
        exp_pc.T.astype("<f4").tofile(f)  # component-major
    std_exp = np.linspace(3e4, 1e3, k_exp)
    np.savetxt(d / "std_exp.txt", std_exp)
    tri = Delaunay(front_pts[:, :2]).simplices.astype(np.int64)
    # clockwise on purpose: the converter must orient normals out of the face
    a, b, c = (front_pts[tri[:, i], :2] for i in range(3))
    ccw = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]) > 0
    tri[ccw] = tri[ccw][:, [0, 2, 1]]
    mask2 = np.sort(rng.choice(n_front, 300, replace=False))
    pos = -np.ones(n_front, dtype=np.int64)
    pos[mask2] = np.arange(len(mask2))
    tri_mask2 = pos[tri[(pos[tri] >= 0).all(1)]]
    skin = (rng.random(n_front) > 0.5).astype(np.float64)
    savemat(d / "BFM_exp_idx.mat", {"trimIndex": (trim + 1).reshape(-1, 1).astype(np.float64)})
    savemat(d / "BFM_front_idx.mat", {"idx": (front_idx + 1).reshape(-1, 1).astype(np.float64)})
    savemat(
        d / "facemodel_info.mat",
        {
            "tri": (tri + 1).astype(np.float64),
            "keypoints": (np.arange(68) + 1).reshape(1, -1).astype(np.float64),
            "frontmask2_idx": (mask2 + 1).reshape(-1, 1).astype(np.float64),
            "tri_mask2": (tri_mask2 + 1).astype(np.float64),
            "skinmask": skin.reshape(1, -1),
        },
    )
    truth = {
        "front_mm": full[:n_front],
        "perm": perm,
        "shape_pc": shape_pc,
        "shape_ev": shape_ev,
        "exp_pc": exp_pc.astype(np.float64),
        "front_idx": front_idx,
        "std_exp": std_exp,
        "tex_mu": tex_mu,
        "tex_pc": tex_pc,
        "tex_ev": tex_ev,
        "tri": tri,
        "mask2": mask2,
        "tri_mask2": tri_mask2,
        "skin": skin > 0,
    }
    return d, truth


def test_exp_pca_reader_layout(bfm09_files):
    d, truth = bfm09_files
    pc = read_exp_pca(d / "Exp_Pca.bin", truth["exp_pc"].shape[0] // 3)
    np.testing.assert_array_equal(pc, truth["exp_pc"])
    with pytest.raises(ModelFileError):
        read_exp_pca(d / "Exp_Pca.bin", 10)


def test_bfm09_conversion_synthetic(bfm09_files, tmp_path):
    d, t = bfm09_files
    out = import_bfm09(d / "01_MorphableModel.mat", d / "Exp_Pca.bin", d, tmp_path / "bfm09.npz")
    m = load_face_model(str(out), dtype=torch.float64)
    n = len(t["front_mm"])
    assert m.layout.n_id == 80 and m.layout.n_exp == 64 and m.layout.n_tex == 80
    assert m.n_vertices == n
    # mean: mm, re-centred on the front vertices' mean
    expect = t["front_mm"] - t["front_mm"].mean(0)
    np.testing.assert_allclose(m.mean_shape.numpy(), expect, atol=1e-3)
    # identity basis: shapePC . shapeEV, µm -> mm, gathered through the permutation
    rows = t["perm"][:n]
    pc = t["shape_pc"].reshape(-1, 3, t["shape_pc"].shape[1])[rows][..., :80]
    np.testing.assert_allclose(
        m.id_basis.numpy(), pc * t["shape_ev"][:80] / 1000.0, rtol=1e-5, atol=1e-6
    )
    # paper units: basis / 1e5 == ours / 100
    # expression basis: expPC . std_exp gathered through the front index (expression order)
    epc = t["exp_pc"].reshape(-1, 3, 79)[t["front_idx"]][..., :64]
    np.testing.assert_allclose(
        m.exp_basis.numpy(), epc * t["std_exp"][:64] / 1000.0, rtol=1e-5, atol=1e-6
    )
    tpc = t["tex_pc"].reshape(-1, 3, t["tex_pc"].shape[1])[rows][..., :80]
    np.testing.assert_allclose(
        m.tex_basis.numpy(), tpc * t["tex_ev"][:80] / 255.0, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        m.tex_mean.numpy(), t["tex_mu"].reshape(-1, 3)[rows] / 255.0, rtol=1e-6
    )
    np.testing.assert_array_equal(m.landmarks68.numpy(), np.arange(68))
    np.testing.assert_array_equal(m.skin_mask.numpy(), t["skin"])
    # the photometric triangles are gathered the TensorFlow way
    assert m.front_mask.sum().item() == 300
    ft = m.front_triangles.numpy()
    assert len(ft) == len(t["tri_mask2"])
    assert set(map(frozenset, ft.tolist())) == set(
        map(frozenset, t["mask2"][t["tri_mask2"]].tolist())
    )
    assert m.front_mask.numpy()[ft].all()
    # the (deliberately clockwise) triangles were flipped to face +z
    tri = m.triangles.numpy()
    v = m.mean_shape.numpy()
    fn = np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]])
    assert (fn[:, 2] > 0).mean() > 0.9
    assert is_consistently_oriented(tri)


def test_bfm09_missing_files(bfm09_files, tmp_path):
    d, _ = bfm09_files
    with pytest.raises(ModelFileError, match="lacks"):
        import_bfm09(d / "01_MorphableModel.mat", d / "Exp_Pca.bin", tmp_path, tmp_path / "x.npz")
    with pytest.raises(ModelFileError):
        import_bfm09(tmp_path / "nope.mat", d / "Exp_Pca.bin", d, tmp_path / "x.npz")


def test_ict_loader_mm_and_landmarks(ict_npz, tmp_path, monkeypatch):
    monkeypatch.setenv("FACERECON_CACHE", str(tmp_path))
    monkeypatch.delenv("FACERECON_ICT_PATH", raising=False)
    with pytest.raises(ModelFileError, match="FACERECON_ICT_PATH"):
        load_face_model("ict")
    m = load_face_model(str(ict_npz))
    raw = np.load(ict_npz)
    assert m.layout.n_id == 100 and m.layout.n_exp == 57
    assert m.n_vertices == int(raw["narrow_face_vertices"])  # narrow face by default
    v = m.mean_shape.double().numpy()
    src = raw["mean"][: m.n_vertices].astype(np.float64) * 10.0
    np.testing.assert_allclose(v, src - src.mean(0), atol=1e-3)  # cm -> mm, centred
    lm = v[m.landmarks68.numpy()]
    assert 130 < np.ptp(v[:, 0]) < 170
    assert 80 < np.linalg.norm(lm[45] - lm[36]) < 100
    assert lm[30, 2] > v[:, 2].max() - 3.0 and lm[36, 0] < 0 < lm[45, 0]
    np.testing.assert_allclose(
        m.id_basis[:, :, 0].double().numpy(),
        raw["identity_basis"][0, : m.n_vertices] * 10.0,
        atol=1e-5,
    )
    _, counts = undirected_edges(m.triangles.numpy())
    assert counts.max() <= 2 and is_consistently_oriented(m.triangles.numpy())
    monkeypatch.setenv("FACERECON_ICT_PATH", str(ict_npz))
    again = load_face_model("ict", dtype=torch.float64)
    assert torch.equal(again.mean_shape, m.mean_shape.double())
    full = convert_ict(ict_npz, narrow=False)
    assert len(full["mean_shape"]) > m.n_vertices


def test_ict_checkout_folder(tmp_path, face_points):
    # a tiny FaceXModel folder: neutral + 2 identities + 1 expression, quads and triangles
    pts = face_points / 10.0  # cm
    tri = Delaunay(pts[:, :2]).simplices
    folder = tmp_path / "ICT-FaceKit" / "FaceXModel"
    folder.mkdir(parents=True)

    def write(name, p):
        lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in p]
        lines += [f"f {a + 1}/1 {b + 1}/1 {c + 1}/1" for a, b, c in tri]
        (folder / name).write_text("\n".join(lines) + "\n")

    write("generic_neutral_mesh.obj", pts)
    write("identity000.obj", pts + np.array([0.1, 0, 0]))
    write("identity001.obj", pts * 1.01)
    write("jawOpen.obj", pts - np.array([0, 0.2, 0]))
    np.savetxt(tmp_path / "ICT-FaceKit" / "landmarks68.txt", np.arange(68), fmt="%d")
    out = import_ict(tmp_path / "ICT-FaceKit", tmp_path / "ict.npz", narrow=False)
    m = load_face_model(str(out))
    assert m.layout.n_id == 2 and m.layout.n_exp == 1
    torch.testing.assert_close(m.id_basis[:, 0, 0], torch.full((m.n_vertices,), 1.0))
    torch.testing.assert_close(m.exp_basis[:, 1, 0], torch.full((m.n_vertices,), -2.0))
    assert m.meta["expression_names"] == ["jawOpen"]


def _cli_argv(d, *extra):
    mat, exp = str(d / "01_MorphableModel.mat"), str(d / "Exp_Pca.bin")
    return ["model", "import", "bfm09", "--mat", mat, "--exp", exp, *extra]


def test_cli_model_import_bfm09(bfm09_files, tmp_path, monkeypatch, capsys):
    """`facerecon model import bfm09` in-process: explicit --out, then the cache default."""
    from facerecon.cli import main

    d, t = bfm09_files
    out = tmp_path / "cli.npz"
    assert main(_cli_argv(d, "--index-dir", str(d), "--out", str(out))) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    m = load_face_model(str(out), dtype=torch.float64)
    expect = t["front_mm"] - t["front_mm"].mean(0)
    np.testing.assert_allclose(m.mean_shape.numpy(), expect, atol=1e-3)
    assert (m.layout.n_id, m.layout.n_exp, m.layout.n_tex) == (80, 64, 80)
    # Without --out it writes $FACERECON_CACHE/bfm09.npz, which --model bfm09 then loads.
    cache = tmp_path / "cache"
    monkeypatch.setenv("FACERECON_CACHE", str(cache))
    assert main(_cli_argv(d, "--index-dir", str(d))) == 0
    assert (cache / "bfm09.npz").is_file()
    cached = load_face_model("bfm09", dtype=torch.float64)
    np.testing.assert_array_equal(cached.id_basis.numpy(), m.id_basis.numpy())


def test_cli_model_import_bfm09_errors(bfm09_files, tmp_path, capsys):
    from facerecon.cli import main

    d, _ = bfm09_files
    out = tmp_path / "x.npz"
    assert main(_cli_argv(d, "--index-dir", str(tmp_path), "--out", str(out))) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "lacks" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    with pytest.raises(SystemExit) as exc:  # --index-dir is required (argparse usage error)
        main(_cli_argv(d, "--out", str(out)))
    assert exc.value.code == 2

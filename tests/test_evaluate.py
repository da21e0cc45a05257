"""facerecon.evaluate: Umeyama, scaled ICP, closest points, the paper's RMSE protocol, folders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facerecon.evaluate import (
    EvaluationError,
    ICPConfig,
    Similarity,
    SurfaceQuery,
    closest_points_on_triangles,
    error_colors,
    evaluate_dirs,
    evaluate_mesh,
    icp,
    main_evaluate,
    region_labels,
    umeyama,
    vertex_normals,
)
from facerecon.evaluate.metrics import REGIONS


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    theta = np.deg2rad(max_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * k @ k


def _compact(vertices: np.ndarray, triangles: np.ndarray):
    used = np.unique(triangles)
    remap = -np.ones(len(vertices), np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[triangles], remap


@pytest.fixture(scope="module")
def face(ict_npz):
    """ICT narrow face in mm: vertices (N, 3), triangles (F, 3), landmarks68 (68,) indices."""
    if not ict_npz.is_file():
        pytest.skip("ICT face model not available")
    d = np.load(ict_npz)
    n_face = int(d["narrow_face_vertices"])
    tri = d["triangles"].astype(np.int64)
    tri = tri[(tri < n_face).all(axis=1)]
    v, t, remap = _compact(d["mean"].astype(np.float64) * 10.0, tri)  # cm -> mm
    lm = remap[d["landmarks68"].astype(np.int64)]
    assert (lm >= 0).all()
    return v, t, lm


def test_umeyama_recovers_similarity_and_never_reflects():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(50, 3)) * 30
    true = Similarity(0.83, _rotation(rng, 70), np.array([4.0, -9.0, 12.0]))
    est = umeyama(src, true.apply(src))
    assert est.scale == pytest.approx(0.83, abs=1e-12)
    np.testing.assert_allclose(est.R, true.R, atol=1e-12)
    np.testing.assert_allclose(est.t, true.t, atol=1e-10)
    np.testing.assert_allclose(true.inverse().apply(true.apply(src)), src, atol=1e-10)
    mirrored = umeyama(src, src * np.array([-1.0, 1.0, 1.0]))  # best proper rotation only
    assert np.linalg.det(mirrored.R) == pytest.approx(1.0)
    rigid = umeyama(src, true.apply(src), with_scale=False)
    assert rigid.scale == 1.0


def test_closest_point_matches_brute_force(face):
    v, t, _ = face
    rng = np.random.default_rng(1)
    q = v[rng.choice(len(v), 60)] + rng.normal(0, 4.0, (60, 3))
    hit = SurfaceQuery(v, t).closest(q)
    c = v[t]
    cp, _ = closest_points_on_triangles(q[:, None], c[None, :, 0], c[None, :, 1], c[None, :, 2])
    brute = np.linalg.norm(cp - q[:, None], axis=2).min(axis=1)
    np.testing.assert_allclose(hit.distance, brute, atol=1e-12)
    np.testing.assert_allclose(np.einsum("mk,mki->mi", hit.bary, v[t[hit.triangle]]), hit.point,
                               atol=1e-10)  # fmt: skip
    # A point above a triangle's interior projects onto it; one beyond a corner snaps to it.
    a, b, cc = np.zeros(3), np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    p, bary = closest_points_on_triangles(np.array([[0.2, 0.3, 5.0], [-1.0, -1.0, 2.0]]), a, b, cc)
    np.testing.assert_allclose(p, [[0.2, 0.3, 0.0], [0.0, 0.0, 0.0]], atol=1e-15)
    np.testing.assert_allclose(bary, [[0.5, 0.2, 0.3], [1.0, 0.0, 0.0]], atol=1e-15)


@pytest.mark.parametrize("seed", [3, 4])
def test_icp_recovers_known_similarity(face, seed):
    """GT = T(face) with a 30 deg rotation, scale in 0.8..1.2, ~10 cm translation; no
    landmarks, so ICP starts from matched centroids at scale 1."""
    v, t, lm = face
    rng = np.random.default_rng(seed)
    true = Similarity(rng.uniform(0.8, 1.2), _rotation(rng, 30.0), rng.uniform(-60, 60, 3))
    res = evaluate_mesh(v, t, true.apply(v), t, nose_index=int(lm[30]))
    assert res.similarity.scale == pytest.approx(true.scale, abs=1e-6)
    np.testing.assert_allclose(res.similarity.R, true.R, atol=1e-6)
    np.testing.assert_allclose(res.similarity.t, true.t, atol=1e-4)
    assert res.rmse_plane < 1e-5 and res.icp[-1].converged


def test_landmark_initialisation_and_point_to_point_icp(face):
    v, t, lm = face
    rng = np.random.default_rng(5)
    true = Similarity(1.1, _rotation(rng, 30.0), np.array([10.0, 20.0, -30.0]))
    gt = true.apply(v)
    noisy = v[lm] + rng.normal(0, 2.0, (68, 3))  # 2 mm landmark noise: init only
    init = umeyama(noisy, gt[lm])
    assert abs(init.scale - 1.1) > 1e-4  # the init alone is not exact
    res = icp(v, gt, t, init=init, config=ICPConfig(correspondence="vertex", trim_fraction=1.0))
    assert res.similarity.scale == pytest.approx(1.1, abs=1e-9)
    np.testing.assert_allclose(res.similarity.R, true.R, atol=1e-9)
    res68 = evaluate_mesh(v, t, gt, t, gt_landmarks=lm, pred_landmarks=noisy)
    assert res68.similarity.scale == pytest.approx(1.1, abs=1e-6)


def test_mesh_against_itself_is_zero(face):
    v, t, lm = face
    res = evaluate_mesh(v, t, v, t, gt_landmarks=lm, pred_landmarks=lm)
    for name, value in res.metrics().items():
        assert value < 1e-6, name
    assert res.n_points == len(res.per_vertex_error) > 2000


def test_gt_vertices_off_the_surface_are_not_scored(face):
    """A GT vertex no GT triangle uses (bfm-lite's nostril pits) is not a surface point: with
    GT triangles it is left out; as a point cloud (no triangles) every vertex counts."""
    v, t, lm = face
    nose = v[lm[30]]
    gv = np.concatenate([v, nose[None] + [0.0, 0.0, 20.0]])  # isolated, 20 mm off the surface
    res = evaluate_mesh(v, t, gv, t, gt_landmarks=lm, pred_landmarks=lm, align=False)
    assert res.rmse_plane < 1e-6 and len(v) not in res.gt_indices
    scan = evaluate_mesh(v, t, gv, None, gt_landmarks=lm, pred_landmarks=lm, align=False)
    assert len(v) in scan.gt_indices and scan.rmse_plane > 0.1


def test_one_mm_normal_offset(face):
    """GT = prediction + 1 mm along its vertex normals, eyes and mouth cut out (closed lids and
    lips are folds: a 1 mm offset of one lip lies closer to the other lip).

    Exact bounds: the nearest predicted vertex of q = p + n is p itself (1 mm), and the
    surface / plane distances are <= 1 mm. They fall below 1 mm only where adjacent faces tilt
    by theta from the vertex normal (distance ~ cos theta); on this mesh that costs < 1 %.
    """
    v, t, lm = face
    labels = region_labels(v, v[lm])
    cut = np.isin(labels, [REGIONS.index("eyes"), REGIONS.index("mouth")])
    vs, ts, _ = _compact(v, t[~cut[t].any(axis=1)])
    gt = vs + vertex_normals(vs, ts)
    res = evaluate_mesh(vs, ts, gt, ts, align=False)
    assert res.rmse_point == pytest.approx(1.0, abs=1e-9)
    assert res.median_plane == pytest.approx(1.0, abs=1e-3)
    assert 0.985 <= res.rmse_plane <= 1.0 + 1e-9
    assert res.rmse_plane <= res.rmse_surface <= 1.0 + 1e-9
    # ICP with scale is not told the offset is an error: it inflates and shifts the prediction
    # to absorb most of it (measured: scale ~1.008, RMSE ~0.47 mm).
    aligned = evaluate_mesh(vs, ts, gt, ts)
    assert aligned.similarity.scale > 1.004
    assert aligned.rmse_plane < 0.6


def _cluster_decimate(v: np.ndarray, t: np.ndarray, cell: float):
    """Vertex clustering on a cell-mm grid: a coarser mesh of a different topology."""
    _, inv = np.unique(np.floor(v / cell).astype(np.int64), axis=0, return_inverse=True)
    inv = inv.ravel()
    nv = np.zeros((inv.max() + 1, 3))
    np.add.at(nv, inv, v)
    nv /= np.bincount(inv)[:, None]
    nt = inv[t]
    ok = (nt[:, 0] != nt[:, 1]) & (nt[:, 1] != nt[:, 2]) & (nt[:, 0] != nt[:, 2])
    return nv, nt[ok]


def test_decimated_prediction_small_error(face):
    v, t, lm = face
    dv, dt = _cluster_decimate(v, t, 3.0)
    assert len(dv) < 0.8 * len(v)
    plain = evaluate_mesh(dv, dt, v, t, nose_index=int(lm[30]), align=False)
    assert 0.05 < plain.rmse_plane < 0.3  # measured 0.17 mm
    assert plain.rmse_point > 3 * plain.rmse_plane  # vertex-to-vertex ignores the surface
    moved = Similarity(1.05, np.eye(3), np.array([3.0, -2.0, 4.0]))
    res = evaluate_mesh(moved.apply(dv), dt, v, t, nose_index=int(lm[30]))
    assert res.similarity.scale == pytest.approx(1 / 1.05, abs=1e-3)
    np.testing.assert_allclose(res.similarity.t, -moved.t / 1.05, atol=0.2)
    assert res.rmse_plane < 0.3


def test_crop_radius_respected(face):
    v, t, lm = face
    nose = v[lm[30]]
    dist = np.linalg.norm(v - nose, axis=1)
    pred = v + np.array([0.0, 0.0, 0.5])
    res = evaluate_mesh(pred, t, v, t, gt_landmarks=lm, crop_mm=50.0, align=False)
    assert res.n_points == int((dist <= 50.0).sum())
    assert dist[res.gt_indices].max() <= 50.0
    far_gt = v.copy()
    out = dist > 50.0
    far_gt[out] = nose + 1.5 * (v[out] - nose)  # pushed outwards: must not change anything
    res_far = evaluate_mesh(pred, t, far_gt, t, gt_landmarks=lm, crop_mm=50.0, align=False)
    assert res_far.rmse_plane == pytest.approx(res.rmse_plane, abs=1e-12)
    assert evaluate_mesh(pred, t, far_gt, t, gt_landmarks=lm, align=False).rmse_plane > 1.0


def test_regions_and_colours(face):
    v, t, lm = face
    labels = region_labels(v[lm], v[lm])
    assert REGIONS[labels[30]] == "nose" and REGIONS[labels[37]] == "eyes"
    assert REGIONS[labels[62]] == "mouth" and REGIONS[labels[8]] == "other"
    res = evaluate_mesh(v + 0.3, t, v, t, gt_landmarks=lm, align=False)
    assert set(res.per_region) == set(REGIONS)
    assert sum(res.region_counts.values()) == res.n_points
    rgb = error_colors(np.array([0.0, 2.5, 5.0, 50.0]), vmax_mm=5.0)
    np.testing.assert_allclose(rgb, [[0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 0, 0]])
    full = res.gt_vertex_colors(len(v))
    assert full.shape == (len(v), 3) and (full[res.gt_indices] != 0.75).any()


def test_bad_inputs_raise_one_line_errors(face):
    v, t, _ = face
    with pytest.raises(EvaluationError, match="triangles index"):
        evaluate_mesh(v, t + len(v), v, t)
    with pytest.raises(EvaluationError, match=r"within 1\.0 mm"):
        evaluate_mesh(v, t, v, t, crop_mm=1.0, nose_index=0)


def _write_obj(path, v, t):
    lines = [f"v {a:.6f} {b:.6f} {c:.6f}" for a, b, c in v]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in t]
    path.write_text("\n".join(lines) + "\n")


def _write_ascii_ply(path, v, t):
    head = ["ply", "format ascii 1.0", f"element vertex {len(v)}", "property float x",
            "property float y", "property float z", f"element face {len(t)}",
            "property list uchar int vertex_indices", "end_header"]  # fmt: skip
    body = [f"{a:.6f} {b:.6f} {c:.6f}" for a, b, c in v] + [f"3 {a} {b} {c}" for a, b, c in t]
    path.write_text("\n".join(head + body) + "\n")


def _write_binary_ply(path, v, t):
    head = ["ply", "format binary_little_endian 1.0", f"element vertex {len(v)}",
            "property float x", "property float y", "property float z", f"element face {len(t)}",
            "property list uchar int vertex_indices", "end_header"]  # fmt: skip
    face_rec = np.empty(len(t), dtype=[("n", "u1"), ("i", "<i4", 3)])
    face_rec["n"], face_rec["i"] = 3, t
    path.write_bytes(("\n".join(head) + "\n").encode() + v.astype("<f4").tobytes()
                     + face_rec.tobytes())  # fmt: skip


def test_evaluate_dirs(face, tmp_path, capsys):
    v, t, lm = face
    keep = np.linalg.norm(v - v[lm[30]], axis=1) <= 60.0  # small meshes keep the test quick
    vs, ts, remap = _compact(v, t[keep[t].all(axis=1)])
    nose = int(remap[lm[30]])
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    _write_obj(pred / "a.obj", vs + 0.5, ts)  # facerecon layout: NAME.obj + coefficient npz
    np.savez(pred / "a.npz", coeffs=np.zeros(257), landmarks68=np.zeros((68, 2)))
    np.savez(pred / "b.npz", vertices=vs, triangles=ts)
    _write_obj(pred / "c.obj", vs, ts)  # no ground truth
    (pred / "e.obj").write_text("v 1 2\nf 1 2 3\n")  # broken prediction
    _write_ascii_ply(gt / "a.ply", vs, ts)
    np.savez(gt / "a.npz", nose_index=nose)
    _write_binary_ply(gt / "b.ply", vs, ts)
    _write_obj(gt / "e.obj", vs, ts)
    _write_obj(gt / "d.obj", vs, ts)  # no prediction
    out = tmp_path / "res" / "results.json"
    result = evaluate_dirs(pred, gt, out, align=False)
    status = {it["name"]: it["status"] for it in result["items"]}
    assert status == {"a": "ok", "b": "ok", "c": "missing_gt", "d": "missing_prediction",
                      "e": "failed"}  # fmt: skip
    items = {it["name"]: it for it in result["items"]}
    direct = evaluate_mesh(vs + 0.5, ts, vs, ts, nose_index=nose, align=False)
    assert direct.rmse_plane > 0.3
    for key in ("rmse_plane", "rmse_point", "mean_surface"):  # same numbers as in memory
        assert items["a"]["metrics"][key] == pytest.approx(getattr(direct, key), abs=1e-5)
    assert items["a"]["metrics"]["n_points"] == direct.n_points
    assert items["b"]["metrics"]["rmse_plane"] < 1e-5  # float32 PLY round trip
    assert "\n" not in items["e"]["error"]
    s = result["summary"]["rmse_plane"]
    pair = [items["a"]["metrics"]["rmse_plane"], items["b"]["metrics"]["rmse_plane"]]
    assert s["n"] == 2 and s["mean"] == pytest.approx(np.mean(pair), abs=1e-12)
    assert s["std"] == pytest.approx(np.std(pair), abs=1e-12)
    assert json.loads(out.read_text())["n_ok"] == 2
    assert "mean ± std" in out.with_suffix(".md").read_text()

    argv = ["--pred", str(pred), "--gt", str(gt), "--out", str(out)]
    assert main_evaluate(argv) == 2  # results.json exists: never replaced silently
    assert capsys.readouterr().err.startswith(f"error: {out} exists")
    assert main_evaluate([*argv, "--overwrite"]) == 1
    captured = capsys.readouterr()
    assert "| a | ok |" in captured.out and "failed: e: " in captured.err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvaluationError, match="no prediction/ground-truth pairs"):
        evaluate_dirs(empty, gt, None)
    assert main_evaluate(["--pred", str(empty), "--gt", str(gt)]) == 2
    assert capsys.readouterr().err.startswith("error: no prediction/ground-truth pairs")


def test_point_cloud_ground_truth(face):
    v, t, lm = face
    res = evaluate_mesh(v + 0.2, t, v, None, gt_landmarks=lm, align=False)
    ref = evaluate_mesh(v + 0.2, t, v, t, gt_landmarks=lm, align=False)
    assert res.rmse_plane == pytest.approx(ref.rmse_plane, abs=1e-12) and res.rmse_plane > 0.05


def _bump_pair(tmp_path, height_mm: float = 4.0):
    """A flat 80 x 80 mm grid (prediction) and the same grid with a Gaussian bump of
    ``height_mm`` at (15, 0) mm (GT, so the bump top is its nose tip); both as npz meshes.
    Returns (pred dir, gt dir, GT vertices (G, 3), GT triangles (H, 3))."""
    xs = np.linspace(-40.0, 40.0, 41)
    gx, gy = np.meshgrid(xs, xs)
    flat = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], axis=1)
    i = np.arange(40)[:, None] * 41 + np.arange(40)[None, :]
    quads = np.stack([i, i + 1, i + 42, i + 41], axis=-1).reshape(-1, 4)
    tri = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    bumped = flat.copy()
    bumped[:, 2] = height_mm * np.exp(-((flat[:, 0] - 15.0) ** 2 + flat[:, 1] ** 2) / 128.0)
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    np.savez(pred / "bump.npz", vertices=flat, triangles=tri)
    np.savez(gt / "bump.npz", vertices=bumped, triangles=tri)
    return pred, gt, bumped, tri


def test_error_map_colours_the_gt_mesh_by_its_error(tmp_path, capsys):
    """The written PLY is the GT mesh; against a flat prediction the point-to-plane error of
    each GT vertex is its bump height, so colours follow error_colors(height) on 0..5 mm."""
    from facerecon.io import read_ply

    pred, gt, bumped, tri = _bump_pair(tmp_path)
    out = tmp_path / "res" / "results.json"
    assert main_evaluate(["--pred", str(pred), "--gt", str(gt), "--out", str(out),
                          "--no-align"]) == 0  # fmt: skip
    (item,) = json.loads(out.read_text())["items"]
    path = tmp_path / "res" / "results_error_maps" / "bump.ply"
    assert item["error_map"] == str(path)
    mesh = read_ply(path)
    assert mesh.vertices.shape == bumped.shape and len(mesh.triangles) == len(tri)
    np.testing.assert_allclose(mesh.vertices, bumped, atol=1e-4)
    height = bumped[:, 2]
    np.testing.assert_allclose(mesh.colors, error_colors(height, 5.0), atol=1.01 / 255)
    top, far = np.argmax(height), np.argmin(np.abs(height) + (bumped[:, 0] > -30))
    assert mesh.colors[top, 0] > 0.99 and mesh.colors[top, 2] < 0.01  # 4 mm: red end
    assert mesh.colors[far, 2] > 0.99 and mesh.colors[far, 0] < 0.01  # ~0 mm: blue
    hotness = mesh.colors[:, 0] - mesh.colors[:, 2]  # red minus blue: rises with the error
    assert np.all(np.diff(hotness[np.argsort(height)]) >= -1.01 / 255)
    assert hotness[height > 2.5].min() > hotness[height < 0.5].max()
    assert "results_error_maps" in capsys.readouterr().out


def test_error_maps_flag_scale_and_overwrite(tmp_path, capsys):
    pred, gt, bumped, _ = _bump_pair(tmp_path)
    out = tmp_path / "r.json"
    base = ["--pred", str(pred), "--gt", str(gt), "--out", str(out), "--no-align"]
    assert main_evaluate([*base, "--no-error-maps"]) == 0
    assert not (tmp_path / "r_error_maps").exists()
    capsys.readouterr()
    # a rerun into the same results refuses before any work, in one line
    assert main_evaluate(base) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {out} exists") and "--overwrite" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "r_error_maps").exists()
    assert main_evaluate([*base, "--overwrite", "--error-scale-mm", "2"]) == 0
    from facerecon.io import read_ply

    colors = read_ply(tmp_path / "r_error_maps" / "bump.ply").colors
    np.testing.assert_allclose(colors, error_colors(bumped[:, 2], 2.0), atol=1.01 / 255)
    assert json.loads(out.read_text())["protocol"]["error_map_scale_mm"] == [0.0, 2.0]
    capsys.readouterr()
    out.unlink(), out.with_suffix(".md").unlink()
    assert main_evaluate(base) == 2  # the error map alone is an output too
    assert "bump.ply exists" in capsys.readouterr().err


def test_scanned_triangles_leave_out_what_no_scanner_sees():
    """A box open at the front with a deep pocket behind a lid: the views see the front face
    and the lid, never the pocket's back wall hidden behind the lid."""
    import numpy as np

    from facerecon.evaluate.metrics import scanned_triangles

    def quad(p0, p1, p2, p3):
        return [p0, p1, p2, p3]

    verts, tris = [], []

    def add(q):
        k = len(verts)
        verts.extend(q)
        tris.extend([[k, k + 1, k + 2], [k, k + 2, k + 3]])

    add(quad((-50, -50, 0), (50, -50, 0), (50, 50, 0), (-50, 50, 0)))  # front, z = 0
    add(quad((-10, -10, -30), (10, -10, -30), (10, 10, -30), (-10, 10, -30)))  # behind it
    seen = scanned_triangles(np.array(verts, float), np.array(tris), pixel_mm=1.0)
    assert seen[:2].all() and not seen[2:].any()
    # without the front plate the back plate is seen
    seen = scanned_triangles(np.array(verts[4:], float), np.array(tris[:2]), pixel_mm=1.0)
    assert seen.all()

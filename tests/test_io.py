"""Tests for facerecon.io: mesh round trips, texture bake, overlays, result files, report."""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facerecon.errors import FaceReconError, ImageError, OutputExistsError
from facerecon.io import (
    ReportEntry,
    bake_vertex_colors_to_texture,
    cylindrical_uv,
    draw_landmarks,
    ensure_writable,
    load_coefficients,
    overlay_image,
    read_glb,
    read_landmarks_json,
    read_obj,
    read_ply,
    read_pts,
    save_coefficients,
    save_png,
    vertex_normals,
    warp_to_original,
    write_glb,
    write_landmarks_json,
    write_obj,
    write_ply,
    write_report,
)
from facerecon.io.mesh import parse_glb
from facerecon.io.overlay import default_radius


def grid_mesh(n: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A bumpy (n*n)-vertex grid in mm: vertices (n*n, 3), triangles (2(n-1)^2, 3), colours."""
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float64)
    x, y = (xs - (n - 1) / 2) * 20.0, (ys - (n - 1) / 2) * 20.0
    z = 30.0 - 0.004 * (x**2 + y**2)
    verts = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    tris = []
    for r in range(n - 1):
        for c in range(n - 1):
            i = r * n + c
            tris += [[i, i + 1, i + n + 1], [i, i + n + 1, i + n]]
    cols = np.stack([xs / (n - 1), ys / (n - 1), np.full_like(xs, 0.25)], axis=-1).reshape(-1, 3)
    return verts, np.array(tris, np.int64), cols


# ----------------------------------------------------------------------------- paths


def test_ensure_writable_refuses_existing_file(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    assert ensure_writable(target, overwrite=False) == target
    assert target.parent.is_dir()
    target.write_text("x")
    with pytest.raises(OutputExistsError, match=r"a\.txt exists; pass --overwrite to replace it"):
        ensure_writable(target, overwrite=False)
    assert issubclass(OutputExistsError, FaceReconError)
    assert ensure_writable(target, overwrite=True) == target


def test_every_writer_refuses_without_overwrite(tmp_path):
    v, f, c = grid_mesh(3)
    writers = {
        "m.obj": lambda p, o: write_obj(p, v, f, c, overwrite=o),
        "m.ply": lambda p, o: write_ply(p, v, f, c, overwrite=o),
        "m.glb": lambda p, o: write_glb(p, v, f, c, overwrite=o),
        "c.npz": lambda p, o: save_coefficients(p, {"a": np.zeros(2)}, {}, overwrite=o),
        "l.json": lambda p, o: write_landmarks_json(p, np.zeros((68, 2)), overwrite=o),
        "i.png": lambda p, o: save_png(p, np.zeros((2, 2, 3), np.uint8), overwrite=o),
    }
    for name, write in writers.items():
        path = tmp_path / name
        write(path, False)
        before = path.read_bytes()
        with pytest.raises(OutputExistsError):
            write(path, False)
        assert path.read_bytes() == before
        write(path, True)


# ----------------------------------------------------------------------------- meshes


def test_obj_round_trip_with_torch_inputs(tmp_path):
    v, f, c = grid_mesh()
    path = write_obj(tmp_path / "face.obj", torch.from_numpy(v), torch.from_numpy(f), c)
    text = path.read_text()
    assert text.count("\nv ") == 36 and text.count("\nf ") == 50
    mesh = read_obj(path)
    np.testing.assert_allclose(mesh.vertices, v, atol=1e-5)
    np.testing.assert_allclose(mesh.colors, c, atol=1e-5)
    np.testing.assert_array_equal(mesh.triangles, f)
    assert mesh.uv is None and mesh.texture_path is None


def test_obj_with_uv_texture_writes_mtl_and_png(tmp_path):
    v, f, c = grid_mesh()
    uv = cylindrical_uv(v)
    tex = bake_vertex_colors_to_texture(uv, f, c, size=64)
    path = write_obj(tmp_path / "face.obj", v, f, c, uv=uv, texture=tex)
    mtl = (tmp_path / "face.mtl").read_text()
    assert "map_Kd face_texture.png" in mtl
    assert path.read_text().splitlines()[1] == "mtllib face.mtl"
    mesh = read_obj(path)
    assert mesh.texture_path == tmp_path / "face_texture.png"
    np.testing.assert_array_equal(np.asarray(Image.open(mesh.texture_path)), tex)
    np.testing.assert_allclose(mesh.uv, uv, atol=1e-6)
    np.testing.assert_array_equal(mesh.triangles, f)
    with pytest.raises(ValueError, match="needs uv"):
        write_obj(tmp_path / "x.obj", v, f, texture=tex)


def test_glb_with_a_texture_is_a_gltf_material(tmp_path):
    """The texture is embedded as a PNG image and the material's baseColorTexture, read through
    TEXCOORD_0 (glTF's v points down); no COLOR_0 (it would tint the texture); the OBJ written
    from the same PNG bytes refers to it by a relative path (Blender, Unity)."""
    import io

    from facerecon.io import png_bytes

    v, f, _ = grid_mesh()
    uv = cylindrical_uv(v)
    tex = np.zeros((32, 48, 3), np.uint8)
    tex[:, :24] = (200, 40, 30)
    tex[:, 24:] = (20, 60, 220)
    png = png_bytes(tex)
    path = write_glb(tmp_path / "face.glb", v, f, uv=uv, texture=png)
    doc, binary = parse_glb(path.read_bytes())
    prim = doc["meshes"][0]["primitives"][0]
    assert "COLOR_0" not in prim["attributes"] and "TEXCOORD_0" in prim["attributes"]
    pbr = doc["materials"][prim["material"]]["pbrMetallicRoughness"]
    assert pbr["baseColorTexture"] == {"index": 0, "texCoord": 0}
    image = doc["images"][doc["textures"][0]["source"]]
    assert image["mimeType"] == "image/png"
    view = doc["bufferViews"][image["bufferView"]]
    data = binary[view["byteOffset"] : view["byteOffset"] + view["byteLength"]]
    assert data == png
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), tex)
    assert doc["samplers"][doc["textures"][0]["sampler"]]["wrapS"] == 33071
    acc = doc["accessors"][prim["attributes"]["TEXCOORD_0"]]
    assert acc["type"] == "VEC2" and acc["count"] == len(v)
    mesh = read_glb(path)
    np.testing.assert_allclose(mesh.uv, uv, atol=1e-6)
    assert mesh.colors is None
    obj = write_obj(tmp_path / "out" / "face.obj", v, f, uv=uv, texture=png)
    assert "map_Kd face_texture.png\n" in (tmp_path / "out" / "face.mtl").read_text()
    assert (tmp_path / "out" / "face_texture.png").read_bytes() == png
    assert read_obj(obj).texture_path == tmp_path / "out" / "face_texture.png"
    assert not list((tmp_path / "out").glob(".*"))  # atomic writes leave no temporary file
    with pytest.raises(ValueError, match="needs uv"):
        write_glb(tmp_path / "x.glb", v, f, texture=png)


def test_ply_round_trip_binary(tmp_path):
    v, f, c = grid_mesh()
    path = write_ply(tmp_path / "face.ply", v, f, c)
    data = path.read_bytes()
    assert data.startswith(b"ply\nformat binary_little_endian 1.0\n")
    header_len = data.index(b"end_header\n") + len(b"end_header\n")
    assert len(data) == header_len + 36 * 15 + 50 * 13  # xyz f4 + rgb u1; u1 count + 3 i4
    mesh = read_ply(path)
    np.testing.assert_allclose(mesh.vertices, v, atol=1e-4)
    assert np.abs(mesh.colors - c).max() <= 0.5 / 255 + 1e-9
    np.testing.assert_array_equal(mesh.triangles, f)
    plain = read_ply(write_ply(tmp_path / "plain.ply", v, f))
    assert plain.colors is None and len(plain.vertices) == 36


def test_glb_structure_units_and_round_trip(tmp_path):
    v, f, c = grid_mesh()
    path = write_glb(tmp_path / "face.glb", v, f, c)
    data = path.read_bytes()
    magic, version, total = struct.unpack_from("<III", data, 0)
    assert (magic, version, total) == (0x46546C67, 2, len(data))
    json_len, json_type = struct.unpack_from("<II", data, 12)
    bin_len, bin_type = struct.unpack_from("<II", data, 20 + json_len)
    assert json_type == 0x4E4F534A and bin_type == 0x004E4942
    assert json_len % 4 == 0 and bin_len % 4 == 0 and total % 4 == 0
    assert 20 + json_len + 8 + bin_len == total
    doc, binary = parse_glb(data)
    assert doc["asset"]["version"] == "2.0"
    assert doc["buffers"][0]["byteLength"] == bin_len == len(binary)
    assert all(view["byteOffset"] % 4 == 0 for view in doc["bufferViews"])
    prim = doc["meshes"][0]["primitives"][0]
    assert set(prim["attributes"]) == {"POSITION", "NORMAL", "COLOR_0"}
    assert doc["materials"][0]["doubleSided"] is True
    pos_acc = doc["accessors"][prim["attributes"]["POSITION"]]
    # glTF is metres: the accessor bounds are the mm extent / 1000.
    np.testing.assert_allclose(pos_acc["min"], v.min(axis=0) / 1000, atol=1e-7)
    np.testing.assert_allclose(pos_acc["max"], v.max(axis=0) / 1000, atol=1e-7)
    assert doc["accessors"][prim["indices"]]["componentType"] == 5125  # uint32
    assert doc["accessors"][prim["indices"]]["count"] == f.size

    metres = read_glb(path, to_mm=False)
    np.testing.assert_allclose(metres.vertices, v / 1000, atol=1e-7)
    mesh = read_glb(path)
    np.testing.assert_allclose(mesh.vertices, v, atol=1e-3)
    np.testing.assert_allclose(mesh.colors, c, atol=1e-3)
    np.testing.assert_array_equal(mesh.triangles, f)
    np.testing.assert_allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-6)
    centre = 2 * 6 + 2  # a vertex near the top of the bump faces +z
    assert mesh.normals[centre, 2] > 0.95


def test_vertex_normals_of_flat_square_point_to_plus_z():
    v = np.array([[0, 0, 5], [10, 0, 5], [10, 10, 5], [0, 10, 5], [99, 99, 99]], float)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    n = vertex_normals(v, f)
    np.testing.assert_allclose(n, np.tile([0.0, 0.0, 1.0], (5, 1)), atol=1e-12)


def test_cylindrical_uv_range_and_orientation():
    v, _, _ = grid_mesh()
    uv = cylindrical_uv(v, margin=0.05)
    assert uv.min() == pytest.approx(0.05) and uv.max() == pytest.approx(0.95)
    # u grows with x (subject's left is image right), v grows with y (up).
    assert np.all(np.diff(uv.reshape(6, 6, 2)[0, :, 0]) > 0)
    assert np.all(np.diff(uv.reshape(6, 6, 2)[:, 0, 1]) > 0)


def test_bake_of_cylindrical_uv_reproduces_vertex_colours():
    n = 60  # a face-sized dome that curves back at the top and bottom (like a forehead)
    ys, xs = np.mgrid[0:n, 0:n] / (n - 1) * 2 - 1
    v = np.stack([80 * xs, 100 * ys, 60 * np.sqrt(2.1 - xs**2 - ys**2)], -1).reshape(-1, 3)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    f = np.concatenate([np.stack([a, b, c], -1), np.stack([a, c, d], -1)]).reshape(-1, 3)
    cols = np.stack([(xs.ravel() + 1) / 2, (ys.ravel() + 1) / 2, np.full(n * n, 0.3)], 1)
    uv = cylindrical_uv(v)
    size = 512
    tex = bake_vertex_colors_to_texture(uv, f, cols, size=size)
    col_px = np.clip((uv[:, 0] * size).astype(int), 0, size - 1)
    row_px = np.clip(((1 - uv[:, 1]) * size).astype(int), 0, size - 1)
    err = np.abs(tex[row_px, col_px] / 255.0 - cols).max(axis=1)
    assert err.max() < 0.03, err.max()  # UV map is one-to-one; colours interpolate smoothly


def test_bake_colours_at_triangle_centres_and_dilation():
    size = 64
    # Two separate triangles with flat colours and one with three different vertex colours.
    uv = np.array(
        [[0.05, 0.55], [0.45, 0.55], [0.05, 0.95],
         [0.55, 0.55], [0.95, 0.55], [0.95, 0.95],
         [0.10, 0.05], [0.60, 0.05], [0.10, 0.45]]
    )  # fmt: skip
    cols = np.array(
        [[1, 0, 0]] * 3 + [[0, 0, 1]] * 3 + [[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float
    )
    tris = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    tex = bake_vertex_colors_to_texture(uv, tris, cols, size=size, dilate=3)
    assert tex.shape == (size, size, 3) and tex.dtype == np.uint8

    def pixel(u: float, v: float) -> np.ndarray:
        return tex[int((1 - v) * size), int(u * size)].astype(int)

    for t, want in [(0, [255, 0, 0]), (1, [0, 0, 255]), (2, [85, 85, 85])]:
        cu, cv = uv[tris[t]].mean(axis=0)
        assert np.abs(pixel(cu, cv) - want).max() <= 6, (t, pixel(cu, cv))
    # Dilation: 2 px left of the red triangle's vertical edge u=0.05 is still red.
    assert np.array_equal(tex[int(0.3 * size), int(0.05 * size) - 2], [255, 0, 0])
    # Far background gets the mean covered colour, not black.
    corner = tex[0, size // 2].astype(int)
    assert corner.sum() > 100


# ----------------------------------------------------------------------------- overlays


def test_overlay_blending_math():
    photo = np.full((2, 2, 3), 100, np.uint8)
    render = np.ones((2, 2, 3))  # white, float
    mask = np.array([[0.0, 1.0], [0.5, 0.0]])
    out = overlay_image(photo, render, mask, alpha=0.7)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], [[100, 208], [154, 100]])  # 100*.3+255*.7=208.5
    out8 = overlay_image(photo, np.full((2, 2, 3), 200, np.uint8), mask, alpha=1.0)
    np.testing.assert_array_equal(out8[..., 1], [[100, 200], [150, 100]])


def test_warp_to_original_translation_scale_and_masks():
    crop = np.zeros((4, 4, 3), np.uint8)
    crop[1, 2] = [10, 200, 30]
    M = np.array([[1.0, 0.0, 10.0], [0.0, 1.0, 5.0]])  # crop (x, y) -> photo (x+10, y+5)
    out = warp_to_original(crop, M, (20, 30))
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[6, 12], [10, 200, 30])
    assert out.sum() == 240
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    M2 = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    wm = warp_to_original(mask, M2, (8, 8))
    assert wm.dtype == np.float32 and wm.shape == (8, 8)
    assert wm[3, 3] == pytest.approx(1.0) and wm[0, 0] == 0.0 and wm[7, 7] == 0.0
    six = warp_to_original(np.ones((4, 4, 6), np.float64), M, (20, 30))
    assert six.shape == (20, 30, 6) and six[6, 12].tolist() == [1.0] * 6


def test_draw_landmarks_colours_points_and_keeps_input():
    img = np.zeros((200, 300, 3), np.uint8)
    out = draw_landmarks(img, np.array([[50.0, 40.0], [np.nan, 1.0]]), color=(255, 0, 0), radius=3)
    assert img.sum() == 0
    np.testing.assert_array_equal(out[40, 50], [255, 0, 0])
    assert out[40, 56].sum() == 0 and out[:, 100:].sum() == 0
    assert default_radius((224, 224)) == 1 and default_radius((1000, 2000)) == 4


def test_save_png_float_image(tmp_path):
    img = np.linspace(0, 1, 12).reshape(2, 2, 3)
    path = save_png(tmp_path / "x.png", img)
    back = np.asarray(Image.open(path))
    np.testing.assert_array_equal(back, np.round(img * 255).astype(np.uint8))


# ----------------------------------------------------------------------------- results


def test_coefficients_round_trip(tmp_path):
    arrays = {"id_coeff": np.arange(80, dtype=np.float32), "angles": torch.tensor([0.1, -0.2, 0.3])}
    meta = {"model": "bfm-lite", "seconds": np.float64(1.5), "steps": np.int64(3)}
    path = save_coefficients(tmp_path / "coeffs.npz", arrays, meta)
    assert path == tmp_path / "coeffs.npz" and path.exists()
    got, got_meta = load_coefficients(path)
    assert set(got) == {"id_coeff", "angles"}
    np.testing.assert_array_equal(got["id_coeff"], arrays["id_coeff"])
    assert got["id_coeff"].dtype == np.float32
    np.testing.assert_allclose(got["angles"], [0.1, -0.2, 0.3], rtol=1e-6)
    assert got_meta == {"model": "bfm-lite", "seconds": 1.5, "steps": 3}


def test_landmarks_json_round_trip(tmp_path):
    lm = np.random.default_rng(0).uniform(0, 500, (68, 2))
    lm3 = np.random.default_rng(1).normal(size=(68, 3))
    path = write_landmarks_json(
        tmp_path / "lm.json", lm, lm3, extra={"image": "a.jpg", "score": np.float32(0.5)}
    )
    doc = read_landmarks_json(path)
    np.testing.assert_allclose(doc["landmarks68"], lm, atol=5e-4)
    np.testing.assert_allclose(doc["landmarks3d"], lm3, atol=5e-6)
    assert doc["image"] == "a.jpg" and doc["score"] == 0.5
    assert json.loads(path.read_text())["format"] == "facerecon-landmarks"
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        write_landmarks_json(tmp_path / "bad.json", np.zeros((5, 2)))


def test_read_pts_is_zero_based_and_rejects_malformed_files(tmp_path):
    path = tmp_path / "a.pts"
    path.write_text("version: 1\nn_points: 3\n{\n1 1\n10.5 20.25\n3 4\n}\n")
    np.testing.assert_array_equal(read_pts(path), [[0.0, 0.0], [9.5, 19.25], [2.0, 3.0]])
    path.write_text("version: 1\n1 1\n")
    with pytest.raises(ImageError, match=r"malformed \.pts"):
        read_pts(path)


# ----------------------------------------------------------------------------- report


def make_report_inputs(tmp_path):
    """Two reconstructed faces and one failure, with photos, overlays and GLBs on disk."""
    v, f, c = grid_mesh()
    data = tmp_path / "data"
    entries = []
    for i, name in enumerate(["alice.jpg", "bob <2>.png"]):
        photo = save_png(data / f"photo{i}.png", np.full((8, 8, 3), 60 * i, np.uint8))
        overlay = save_png(data / f"overlay{i}.png", np.full((8, 8, 3), 90, np.uint8))
        glb = write_glb(data / f"mesh{i}.glb", v * (1 + i), f, c)
        entries.append(
            ReportEntry(name, str(photo), str(overlay), str(glb), "ok",
                        meta={"model": "bfm-lite", "method": "fit", "seconds": 1.23456},
                        confidence=0.875 if i else None)
        )  # fmt: skip
    entries.append(ReportEntry("broken.jpg", None, None, None, "failed", "no face found"))
    return entries


def test_report_html_lists_entries_failures_and_embeds_meshes(tmp_path):
    entries = make_report_inputs(tmp_path)
    out = tmp_path / "out"
    path = write_report(out, entries, title="Run <1>")
    page = path.read_text()
    assert path == out / "report.html" and (out / "viewer.js").stat().st_size > 100_000
    assert "<title>Run &lt;1&gt;</title>" in page
    assert "alice.jpg" in page and "bob &lt;2&gt;.png" in page
    assert re.search(r"broken\.jpg</span>: <span class=\"error\">no face found", page)
    assert "1.235" in page and "bfm-lite" in page and "0.875" in page
    assert 'src="../data/photo0.png"' in page and 'src="../data/overlay1.png"' in page
    assert '<script src="viewer.js"></script>' in page
    blobs = re.findall(r'<script type="text/plain" id="(glb-\d)">([A-Za-z0-9+/=]+)</script>', page)
    assert [b[0] for b in blobs] == ["glb-0", "glb-1"]
    for (_, b64), entry in zip(blobs, entries, strict=False):
        assert base64.b64decode(b64) == Path(entry.glb_path).read_bytes()
    assert page.count('class="viewer" data-glb=') == 2
    with pytest.raises(OutputExistsError):
        write_report(out, entries)
    write_report(out, entries[:1], overwrite=True)
    assert "bob" not in (out / "report.html").read_text()
    with pytest.raises(ValueError, match="status"):
        write_report(out, [ReportEntry("x", None, None, None, "done")], overwrite=True)

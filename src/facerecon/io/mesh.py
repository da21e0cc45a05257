"""Mesh exports (OBJ + MTL + PNG texture, binary PLY, GLB) and minimal readers.

Units: ``vertices`` are millimetres. OBJ and PLY keep millimetres; GLB is converted to
metres because glTF 2.0 defines its unit as the metre (``write_glb`` divides by 1000 and
``read_glb`` multiplies back by default). Axes follow the face model: +x subject's left,
+y up, +z towards the camera, which is also glTF's +y-up / +z-front convention.

UV convention (``uv (N, 2)``): OBJ style, u to the right and v up, both in 0..1; texture
pixel row ``r`` holds ``v = 1 - (r + 0.5) / H``.

Colours are floats in 0..1 (sRGB, as the albedo). In GLB they are stored linear (glTF's
definition of ``COLOR_0``) so that viewers show the same colours as the OBJ/PLY.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facerecon.fileio import atomic_write_bytes, atomic_write_text
from facerecon.geometry import vertex_normals
from facerecon.io._convert import as_numpy, check_shape
from facerecon.io.overlay import png_bytes
from facerecon.io.paths import ensure_writable

GLB_MAGIC = 0x46546C67  # b"glTF"
GLB_CHUNK_JSON = 0x4E4F534A  # b"JSON"
GLB_CHUNK_BIN = 0x004E4942  # b"BIN\0"
_ARRAY_BUFFER = 34962
_ELEMENT_ARRAY_BUFFER = 34963
_FLOAT = 5126
_UNSIGNED_SHORT = 5123
_UNSIGNED_INT = 5125
_LINEAR, _LINEAR_MIPMAP_LINEAR, _CLAMP_TO_EDGE = 9729, 9987, 33071


@dataclass
class MeshData:
    """A triangle mesh as read back from a file.

    vertices (N, 3) float64; triangles (F, 3) int64; colors (N, 3) float64 in 0..1 or None;
    uv (N, 2) or None; normals (N, 3) or None; texture_path: OBJ ``map_Kd`` file or None.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    colors: np.ndarray | None = None
    uv: np.ndarray | None = None
    normals: np.ndarray | None = None
    texture_path: Path | None = None


def _mesh_arrays(
    vertices: Any, triangles: Any, colors: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate and convert: vertices (N,3) float64, triangles (F,3) int64, colors (N,3) | None."""
    v = as_numpy(vertices, np.float64)
    f = as_numpy(triangles)
    check_shape("vertices", v, 2, 3)
    check_shape("triangles", f, 2, 3)
    if not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"triangles must be integers, got {f.dtype}")
    f = f.astype(np.int64)
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"triangle indices must lie in [0, {len(v)}), got {f.min()}..{f.max()}")
    c = None
    if colors is not None:
        c = as_numpy(colors, np.float64)
        check_shape("colors", c, 2, 3)
        if len(c) != len(v):
            raise ValueError(f"colors has {len(c)} rows, vertices has {len(v)}")
        c = np.clip(c, 0.0, 1.0)
    return v, f, c


# ----------------------------------------------------------------------------- UV + texture


def _to_uchar(colors: np.ndarray) -> np.ndarray:
    """Colours (or an image) in 0..1 -> uint8 0..255 (clipped, rounded)."""
    return np.round(np.clip(colors, 0.0, 1.0) * 255.0).astype(np.uint8)


def cylindrical_uv(
    vertices: Any, margin: float = 0.02, axis: tuple[float, float] | None = None
) -> np.ndarray:
    """UV coordinates ``(N, 2)`` from a cylinder around a vertical (y) axis.

    ``u`` follows the angle around the axis (``atan2(x - ax, z - az)``: 0 in front, the seam
    at the back), ``v`` follows height. Both are stretched to fill ``[margin, 1 - margin]``.
    ``axis = (ax, az)`` defaults to the horizontal centre of the bounding box and half the
    mesh width behind its front-most point, i.e. roughly the centre of a head, so that face
    masks (which curve back above the forehead and below the chin) do not fold over.
    """
    v = as_numpy(vertices, np.float64)
    check_shape("vertices", v, 2, 3)
    lo, hi = v.min(axis=0), v.max(axis=0)
    if axis is None:
        axis = ((lo[0] + hi[0]) / 2, hi[2] - (hi[0] - lo[0]) / 2)
    theta = np.arctan2(v[:, 0] - axis[0], v[:, 2] - axis[1])

    def stretch(x: np.ndarray) -> np.ndarray:
        span = x.max() - x.min()
        t = (x - x.min()) / span if span > 0 else np.full_like(x, 0.5)
        return margin + (1.0 - 2.0 * margin) * t

    return np.stack([stretch(theta), stretch(v[:, 1])], axis=1)


def _uv_to_pixels(uv: np.ndarray, size: int) -> np.ndarray:
    """UV ``(N, 2)`` (v up) to texture pixels ``(N, 2)`` (x=col, y=row, centres at integers)."""
    return np.stack([uv[:, 0] * size - 0.5, (1.0 - uv[:, 1]) * size - 0.5], axis=1)


def _triangle_id_map(tri_px: np.ndarray, size: int) -> np.ndarray:
    """Rasterise triangles ``(F, 3, 2)`` (pixel coords) into an id map ``(size, size)`` int32.

    Pixels whose centres fall in triangle ``i`` hold ``i`` (later triangles win on shared
    edges); uncovered pixels hold -1. Uses cv2 with 4 bits of sub-pixel precision.
    """
    shift = 4
    pts = np.round(tri_px * (1 << shift)).astype(np.int32)
    ids = np.full((size, size), -1, np.int32)
    for i, tri in enumerate(pts):
        cv2.fillConvexPoly(ids, tri, i, cv2.LINE_8, shift)
    return ids


def _barycentric(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Barycentric weights ``(P, 3)`` of points ``p (P, 2)`` in triangles ``tri (P, 3, 2)``.

    Weights are clipped to >= 0 and renormalised (rasterised edge pixels may lie just
    outside); degenerate triangles get equal weights.
    """
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    v0, v1, v2 = b - a, c - a, p - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    ok = np.abs(den) > 1e-12
    safe = np.where(ok, den, 1.0)
    w1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / safe
    w2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / safe
    w = np.clip(np.stack([1.0 - w1 - w2, w1, w2], axis=1), 0.0, None)
    total = w.sum(axis=1, keepdims=True)
    w = np.where(total > 0, w / np.where(total > 0, total, 1.0), 1.0 / 3.0)
    w[~ok] = 1.0 / 3.0
    return w


def _dilate(image: np.ndarray, covered: np.ndarray, pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Grow covered regions by ``pixels`` with the mean of covered 3x3 neighbours."""
    img = image.copy()
    mask = covered.astype(np.float32)
    for _ in range(pixels):
        total = cv2.boxFilter(img * mask[..., None], -1, (3, 3), normalize=False)
        count = cv2.boxFilter(mask, -1, (3, 3), normalize=False)
        grow = (mask == 0) & (count > 0)
        img[grow] = total[grow] / count[grow][:, None]
        mask[grow] = 1.0
    return img, mask > 0


def bake_vertex_colors_to_texture(
    uv: Any, triangles: Any, colors: Any, size: int = 1024, dilate: int = 4
) -> np.ndarray:
    """Rasterise per-vertex ``colors (N, 3)`` into a UV texture ``(size, size, 3)`` uint8.

    Each triangle ``(F, 3)`` is drawn at its ``uv (N, 2)`` position (OBJ convention, v up) with
    barycentric colour interpolation at pixel centres. Covered areas are then grown by
    ``dilate`` pixels so that texture filtering does not pull background into the seams;
    the remaining background is filled with the mean colour.
    """
    uv = as_numpy(uv, np.float64)
    check_shape("uv", uv, 2, 2)
    _, f, c = _mesh_arrays(np.zeros((len(uv), 3)), triangles, colors)
    if c is None:
        raise ValueError("colors is required")
    tri_px = _uv_to_pixels(uv, size)[f]  # (F, 3, 2)
    ids = _triangle_id_map(tri_px, size)
    rows, cols = np.nonzero(ids >= 0)
    tri_of_pixel = ids[rows, cols]
    w = _barycentric(np.stack([cols, rows], axis=1).astype(np.float64), tri_px[tri_of_pixel])
    image = np.zeros((size, size, 3), np.float32)
    image[rows, cols] = np.einsum("pk,pkc->pc", w, c[f[tri_of_pixel]])
    covered = ids >= 0
    image, covered = _dilate(image, covered, dilate)
    if covered.any():
        image[~covered] = image[covered].mean(axis=0)
    return _to_uchar(image)


# ----------------------------------------------------------------------------- OBJ


def write_obj(
    path: str | os.PathLike,
    vertices: Any,
    triangles: Any,
    colors: Any = None,
    uv: Any = None,
    texture: Any = None,
    overwrite: bool = False,
) -> Path:
    """Write a Wavefront OBJ in millimetres; returns the OBJ path.

    vertices (N, 3) mm; triangles (F, 3) int (0-based, counter-clockwise); colors (N, 3) in
    0..1 are written as ``v x y z r g b``. With ``uv (N, 2)`` the OBJ gets ``vt`` lines; with
    ``uv`` and ``texture`` (an image ``(H, W, 3)`` uint8, or PNG file bytes) it also gets
    ``<stem>.mtl`` and ``<stem>_texture.png`` next to it (``map_Kd``, a path relative to the
    MTL), which Blender/Unity/MeshLab display. Every file is written atomically.
    """
    v, f, c = _mesh_arrays(vertices, triangles, colors)
    uvs = None
    if uv is not None:
        uvs = as_numpy(uv, np.float64)
        check_shape("uv", uvs, 2, 2)
        if len(uvs) != len(v):
            raise ValueError(f"uv has {len(uvs)} rows, vertices has {len(v)}")
    if texture is not None and uvs is None:
        raise ValueError("a texture needs uv coordinates")

    path = ensure_writable(path, overwrite)
    mtl_path = path.with_suffix(".mtl")
    png_path = path.with_name(path.stem + "_texture.png")
    if texture is not None:
        ensure_writable(mtl_path, overwrite)
        ensure_writable(png_path, overwrite)
        data = texture if isinstance(texture, bytes) else png_bytes(texture)
        atomic_write_bytes(png_path, data)
        atomic_write_text(
            mtl_path,
            "# facerecon material\nnewmtl face\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\n"
            f"map_Kd {png_path.name}\n",
        )

    parts = ["# facerecon mesh, units: millimetres\n"]
    if texture is not None:
        parts.append(f"mtllib {mtl_path.name}\n")
    body = v if c is None else np.hstack([v, c])
    parts.append(_rows("v" + " %.5f" * body.shape[1] + "\n", body))
    parts.append(_obj_tail(uvs, f, texture is not None))
    atomic_write_text(path, "".join(parts))
    return path


def _rows(row_format: str, array: np.ndarray) -> str:
    """``array (n, k)`` formatted row by row with ``row_format`` (k ``%`` fields), in one
    C-level formatting call (~10x faster than per-value f-strings for a 15k-vertex mesh)."""
    a = np.asarray(array)
    return (row_format * len(a)) % tuple(a.ravel().tolist())


_TAILS: dict[bytes, str] = {}  # the vt / usemtl / f lines of the last few (uv, triangles)


def _obj_tail(uvs: np.ndarray | None, faces: np.ndarray, material: bool) -> str:
    """The OBJ lines after the vertices (``vt``, ``usemtl``, ``f``): the same for every face
    of a model, so formatted once (a digest of the arrays is the key; a few kept)."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    for a in (uvs, faces):
        h.update(b"-" if a is None else np.ascontiguousarray(a).tobytes())
    key = h.digest() + bytes([material])
    if key not in _TAILS:
        parts = [] if uvs is None else [_rows("vt %.6f %.6f\n", uvs)]
        if material:
            parts.append("usemtl face\n")
        idx = faces + 1
        if uvs is None:
            parts.append(_rows("f %d %d %d\n", idx))
        else:
            parts.append(_rows("f %d/%d %d/%d %d/%d\n", np.repeat(idx, 2, axis=1)))
        if len(_TAILS) >= 4:
            _TAILS.pop(next(iter(_TAILS)))
        _TAILS[key] = "".join(parts)
    return _TAILS[key]


def read_obj(path: str | os.PathLike) -> MeshData:
    """Read the geometry of an OBJ file (``v``, ``vt``, ``f``, ``mtllib``; the rest is ignored).

    ``v x y z [r g b]`` lines give vertices (and colours when every vertex line has them);
    polygons are fan-triangulated, negative (relative) indices resolved; ``vt`` is returned per
    vertex when there is one per vertex (faces using ``v/vt`` with equal indices, as
    :func:`write_obj` writes them). Undecodable bytes (e.g. in comments) are replaced.
    """
    path = Path(path)
    xyz: list[list[float]] = []
    rgb: list[list[float]] = []
    uvs: list[list[float]] = []
    faces: list[list[int]] = []
    mtllib = None
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            xyz.append([float(x) for x in parts[1:4]])
            rgb.append([float(x) for x in parts[4:7]])
        elif parts[0] == "vt":
            uvs.append([float(x) for x in parts[1:3]])
        elif parts[0] == "f":
            ids = [int(p.split("/")[0]) for p in parts[1:]]
            ids = [i - 1 if i > 0 else len(xyz) + i for i in ids]
            faces.extend([ids[0], ids[j], ids[j + 1]] for j in range(1, len(ids) - 1))
        elif parts[0] == "mtllib":
            mtllib = path.parent / " ".join(parts[1:])
    texture_path = None
    if mtllib is not None and mtllib.exists():
        for line in mtllib.read_text(errors="replace").splitlines():
            if line.startswith("map_Kd"):
                texture_path = mtllib.parent / line.split(maxsplit=1)[1].strip()
    has_rgb = bool(rgb) and all(len(c) == 3 for c in rgb)
    return MeshData(
        vertices=np.array(xyz, np.float64).reshape(-1, 3),
        triangles=np.array(faces, np.int64).reshape(-1, 3),
        colors=np.array(rgb, np.float64) if has_rgb else None,
        uv=np.array(uvs, np.float64) if len(uvs) == len(xyz) and uvs else None,
        texture_path=texture_path,
    )


# ----------------------------------------------------------------------------- PLY


def write_ply(
    path: str | os.PathLike,
    vertices: Any,
    triangles: Any,
    colors: Any = None,
    overwrite: bool = False,
) -> Path:
    """Write a binary little-endian PLY in millimetres (float xyz, uchar rgb, int32 faces)."""
    v, f, c = _mesh_arrays(vertices, triangles, colors)
    path = ensure_writable(path, overwrite)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if c is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vert = np.empty(len(v), dtype=fields)
    vert["x"], vert["y"], vert["z"] = v[:, 0], v[:, 1], v[:, 2]
    if c is not None:
        rgb = _to_uchar(c)
        vert["red"], vert["green"], vert["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    face = np.empty(len(f), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    face["n"] = 3
    face["idx"] = f
    header = ["ply", "format binary_little_endian 1.0", "comment facerecon mesh, units: mm"]
    header.append(f"element vertex {len(v)}")
    header += ["property float x", "property float y", "property float z"]
    if c is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header += [f"element face {len(f)}", "property list uchar int vertex_indices", "end_header"]
    with open(path, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(vert.tobytes())
        fh.write(face.tobytes())
    return path


_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_PLY_ORDER = {"binary_little_endian": "<", "binary_big_endian": ">"}


def read_ply(path: str | os.PathLike) -> MeshData:
    """Read a PLY mesh: ASCII or binary (either byte order).

    Vertices from the ``x, y, z`` properties (float64), colours from ``red, green, blue``
    (divided by 255) when present; ``face`` lists are fan-triangulated (binary files: triangles
    only). Raises ``ValueError`` for files it cannot read.
    """
    path = Path(path)
    data = path.read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise ValueError(f"{path}: not a PLY file")
    body = data.index(b"\n", end) + 1
    header = data[:end].decode("ascii", "replace").splitlines()
    fmt = next((ln.split()[1] for ln in header if ln.startswith("format")), "")
    elements: list[tuple[str, int, list[list[str]]]] = []
    for line in header:
        parts = line.split()
        if parts and parts[0] == "element":
            elements.append((parts[1], int(parts[2]), []))
        elif parts and parts[0] == "property" and elements:
            elements[-1][2].append(parts[1:])
    if fmt == "ascii":
        columns, faces = _ply_ascii(data[body:], elements)
    elif fmt in _PLY_ORDER:
        columns, faces = _ply_binary(data, body, elements, _PLY_ORDER[fmt], path)
    else:
        raise ValueError(f"{path}: unsupported PLY format {fmt!r}")
    xyz = np.zeros((0, 3))
    colors = None
    if columns:
        xyz = np.stack([columns[c] for c in ("x", "y", "z")], axis=1).astype(np.float64)
        if "red" in columns:
            colors = np.stack([columns[c] for c in ("red", "green", "blue")], axis=1) / 255.0
    return MeshData(vertices=xyz, triangles=faces, colors=colors)


def _ply_ascii(
    body: bytes, elements: list[tuple[str, int, list[list[str]]]]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Vertex columns by property name and ``(F, 3)`` fan-triangulated faces of an ASCII body."""
    tokens = body.split()
    pos = 0
    columns: dict[str, np.ndarray] = {}
    faces = np.zeros((0, 3), np.int64)
    for name, count, props in elements:
        if props and props[0][0] == "list":
            rows = []
            for _ in range(count):
                n = int(tokens[pos])
                ids = [int(x) for x in tokens[pos + 1 : pos + 1 + n]]
                pos += 1 + n
                rows.extend([ids[0], ids[j], ids[j + 1]] for j in range(1, n - 1))
            if name == "face":
                faces = np.array(rows, np.int64).reshape(-1, 3)
        else:
            k = len(props)
            arr = np.array(tokens[pos : pos + k * count], np.float64).reshape(count, k)
            pos += k * count
            if name == "vertex":
                columns = {p[-1]: arr[:, j] for j, p in enumerate(props)}
    return columns, faces


def _ply_binary(
    data: bytes,
    offset: int,
    elements: list[tuple[str, int, list[list[str]]]],
    order: str,
    path: Path,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Vertex columns by property name and ``(F, 3)`` triangles of a binary body."""
    columns: dict[str, np.ndarray] = {}
    faces = np.zeros((0, 3), np.int64)
    for name, count, props in elements:
        if props and props[0][0] == "list":
            _, ctype, itype, _ = props[0]
            dtype = np.dtype(
                [("n", order + _PLY_TYPES[ctype]), ("i", order + _PLY_TYPES[itype], 3)]
            )
            arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            if np.any(arr["n"] != 3):
                raise ValueError(f"{path}: binary PLY faces must be triangles")
            if name == "face":
                faces = arr["i"].astype(np.int64)
        else:
            dtype = np.dtype([(p[1], order + _PLY_TYPES[p[0]]) for p in props])
            arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            if name == "vertex":
                columns = {p[1]: arr[p[1]] for p in props}
        offset += dtype.itemsize * count
    return columns, faces


# ----------------------------------------------------------------------------- GLB


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in 0..1 to linear light (IEC 61966-2-1)."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """Linear light in 0..1 to sRGB encoding (inverse of :func:`srgb_to_linear`)."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1.0 / 2.4) - 0.055)


def _pad4(data: bytes, fill: bytes) -> bytes:
    return data + fill * ((-len(data)) % 4)


@dataclass
class MeshAnimation:
    """A clip for :func:`glb_bytes`: morph targets with per-frame weights and a per-frame node
    pose (glTF ``LINEAR`` samplers; three.js, Blender and Unity play it).

    Attributes:
        times: ``(F,)`` seconds, increasing.
        targets: ``(K, N, 3)`` vertex offsets in mm (e.g. expression directions); K may be 0.
        weights: ``(F, K)`` target weights per frame.
        rotations: ``(F, 4)`` unit quaternions ``(x, y, z, w)`` of the node, or None.
        translations: ``(F, 3)`` node translation in mm, or None.
    """

    times: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    rotations: np.ndarray | None = None
    translations: np.ndarray | None = None


def glb_bytes(
    vertices: Any,
    triangles: Any,
    colors: Any = None,
    normals: Any = None,
    animation: MeshAnimation | None = None,
    uv: Any = None,
    texture: Any = None,
) -> bytes:
    """Encode a mesh as glTF 2.0 binary (GLB) bytes; vertices in mm are stored in metres.

    Attributes: POSITION (float32, min/max), NORMAL (float32; computed when None), COLOR_0
    (uint16 normalised RGBA, linear) when colors is given, and uint32 indices. One mesh, node
    and double-sided material (base colour white, so vertex colours show unchanged). With an
    ``animation``: its morph targets (POSITION offsets, metres) on the primitive and one
    animation ``"clip"`` driving the node's weights, rotation and translation.

    With ``uv (N, 2)`` (OBJ convention, v up) and ``texture`` (an image ``(H, W, 3)`` uint8 or
    PNG bytes): TEXCOORD_0 (glTF's v points down: ``1 - v``) and the PNG embedded as the
    material's ``baseColorTexture`` (sRGB, linear filtering with mipmaps, clamped). glTF
    multiplies COLOR_0 into the base colour: give no ``colors`` with a texture.
    """
    v, f, c = _mesh_arrays(vertices, triangles, colors)
    if texture is not None and uv is None:
        raise ValueError("a texture needs uv coordinates")
    n = vertex_normals(v, f) if normals is None else as_numpy(normals, np.float64)
    check_shape("normals", n, 2, 3)
    pos = (v / 1000.0).astype("<f4")
    blobs: list[tuple[bytes, int | None]] = [
        (pos.tobytes(), _ARRAY_BUFFER),
        (n.astype("<f4").tobytes(), _ARRAY_BUFFER),
    ]
    accessors: list[dict[str, Any]] = [
        {"componentType": _FLOAT, "count": len(v), "type": "VEC3",
         "min": pos.min(axis=0).tolist() if len(v) else [0, 0, 0],
         "max": pos.max(axis=0).tolist() if len(v) else [0, 0, 0]},
        {"componentType": _FLOAT, "count": len(v), "type": "VEC3"},
    ]  # fmt: skip
    attributes = {"POSITION": 0, "NORMAL": 1}
    if c is not None:
        rgba = np.concatenate([srgb_to_linear(c), np.ones((len(c), 1))], axis=1)
        blobs.append((np.round(rgba * 65535.0).astype("<u2").tobytes(), _ARRAY_BUFFER))
        accessors.append(
            {"componentType": _UNSIGNED_SHORT, "normalized": True, "count": len(v), "type": "VEC4"}
        )
        attributes["COLOR_0"] = len(accessors) - 1
    if texture is not None:
        t = as_numpy(uv, np.float64)
        check_shape("uv", t, 2, 2)
        if len(t) != len(v):
            raise ValueError(f"uv has {len(t)} rows, vertices has {len(v)}")
        st = np.stack([t[:, 0], 1.0 - t[:, 1]], axis=1).astype("<f4")
        blobs.append((st.tobytes(), _ARRAY_BUFFER))
        accessors.append({"componentType": _FLOAT, "count": len(v), "type": "VEC2"})
        attributes["TEXCOORD_0"] = len(accessors) - 1
    blobs.append((f.astype("<u4").tobytes(), _ELEMENT_ARRAY_BUFFER))
    accessors.append({"componentType": _UNSIGNED_INT, "count": int(f.size), "type": "SCALAR"})
    indices = len(accessors) - 1
    anim_doc = _add_animation(animation, len(v), blobs, accessors) if animation else None
    if texture is not None:  # the image's buffer view comes after every accessor's
        blobs.append((texture if isinstance(texture, bytes) else png_bytes(texture), None))

    buffer_views = []
    binary = b""
    for i, (blob, target) in enumerate(blobs):
        view = {"buffer": 0, "byteOffset": len(binary), "byteLength": len(blob)}
        if target is not None:
            view["target"] = target
        buffer_views.append(view)
        if i < len(accessors):
            accessors[i]["bufferView"] = i
        binary = _pad4(binary + blob, b"\x00")
    gltf = {
        "asset": {"version": "2.0", "generator": "facerecon"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "face"}],
        "meshes": [{"name": "face", "primitives": [
            {"attributes": attributes, "indices": indices, "material": 0, "mode": 4}
        ]}],
        "materials": [{"name": "face", "doubleSided": True, "pbrMetallicRoughness": {
            "baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0,
            "roughnessFactor": 0.7}}],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": buffer_views,
        "accessors": accessors,
    }  # fmt: skip
    if texture is not None:
        gltf["images"] = [{"bufferView": len(blobs) - 1, "mimeType": "image/png"}]
        gltf["samplers"] = [{"magFilter": _LINEAR, "minFilter": _LINEAR_MIPMAP_LINEAR,
                             "wrapS": _CLAMP_TO_EDGE, "wrapT": _CLAMP_TO_EDGE}]  # fmt: skip
        gltf["textures"] = [{"sampler": 0, "source": 0}]
        pbr = gltf["materials"][0]["pbrMetallicRoughness"]
        pbr["baseColorTexture"] = {"index": 0, "texCoord": 0}
    if anim_doc is not None:
        targets, k = anim_doc.pop("targets"), anim_doc.pop("n_targets")
        if k:
            gltf["meshes"][0]["primitives"][0]["targets"] = targets
            gltf["meshes"][0]["weights"] = [0.0] * k
        gltf["animations"] = [anim_doc]
    json_chunk = _pad4(json.dumps(gltf, separators=(",", ":")).encode("utf-8"), b" ")
    total = 12 + 8 + len(json_chunk) + 8 + len(binary)
    return b"".join([
        struct.pack("<III", GLB_MAGIC, 2, total),
        struct.pack("<II", len(json_chunk), GLB_CHUNK_JSON), json_chunk,
        struct.pack("<II", len(binary), GLB_CHUNK_BIN), binary,
    ])  # fmt: skip


def _add_animation(
    anim: MeshAnimation,
    n_vertices: int,
    blobs: list[tuple[bytes, int | None]],
    accessors: list[dict[str, Any]],
) -> dict[str, Any]:
    """Append the animation's data to ``blobs`` / ``accessors``; its glTF entries."""
    times = np.asarray(anim.times, "<f4").reshape(-1)
    n = len(times)
    if n < 1 or (np.diff(times) <= 0).any():
        raise ValueError("animation times must be increasing, at least one frame")
    targets = np.asarray(anim.targets, np.float64).reshape(-1, n_vertices, 3)
    k = len(targets)

    def add(arr: np.ndarray, kind: str, target: int | None = None, bounds: bool = False) -> int:
        a = np.ascontiguousarray(arr, "<f4")
        blobs.append((a.tobytes(), target))
        acc: dict[str, Any] = {"componentType": _FLOAT, "count": int(a.shape[0]), "type": kind}
        if bounds:
            acc["min"] = a.min(axis=0).reshape(-1).tolist()
            acc["max"] = a.max(axis=0).reshape(-1).tolist()
        accessors.append(acc)
        return len(accessors) - 1

    target_refs = [{"POSITION": add(t / 1000.0, "VEC3", _ARRAY_BUFFER, True)} for t in targets]
    t_in = add(times[:, None], "SCALAR", bounds=True)
    samplers: list[dict[str, Any]] = []
    channels: list[dict[str, Any]] = []

    def channel(output: int, path: str) -> None:
        samplers.append({"input": t_in, "output": output, "interpolation": "LINEAR"})
        channels.append({"sampler": len(samplers) - 1, "target": {"node": 0, "path": path}})

    if k:
        w = np.asarray(anim.weights, np.float64).reshape(n, k)
        channel(add(w.reshape(-1, 1), "SCALAR"), "weights")
    if anim.rotations is not None:
        q = np.asarray(anim.rotations, np.float64).reshape(n, 4)
        channel(add(q / np.linalg.norm(q, axis=1, keepdims=True), "VEC4"), "rotation")
    if anim.translations is not None:
        tr = np.asarray(anim.translations, np.float64).reshape(n, 3) / 1000.0
        channel(add(tr, "VEC3"), "translation")
    return {
        "name": "clip",
        "samplers": samplers,
        "channels": channels,
        "targets": target_refs,
        "n_targets": k,
    }


def write_glb(
    path: str | os.PathLike,
    vertices: Any,
    triangles: Any,
    colors: Any = None,
    normals: Any = None,
    overwrite: bool = False,
    animation: MeshAnimation | None = None,
    uv: Any = None,
    texture: Any = None,
) -> Path:
    """Write a GLB (glTF 2.0 binary); ``vertices (N, 3)`` mm are stored in metres.

    See :func:`glb_bytes` for the content (``animation``: morph targets and a clip; ``uv`` and
    ``texture``: a base colour texture). Written atomically. Returns the path.
    """
    data = glb_bytes(vertices, triangles, colors, normals, animation, uv, texture)
    path = ensure_writable(path, overwrite)
    atomic_write_bytes(path, data)
    return path


def parse_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Split GLB bytes into its JSON document and BIN chunk, checking the header and lengths."""
    magic, version, total = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC or version != 2:
        raise ValueError("not a glTF 2.0 binary")
    if total != len(data):
        raise ValueError(f"GLB header length {total} != file length {len(data)}")
    json_len, json_type = struct.unpack_from("<II", data, 12)
    if json_type != GLB_CHUNK_JSON:
        raise ValueError("first GLB chunk is not JSON")
    doc = json.loads(data[20 : 20 + json_len])
    binary = b""
    pos = 20 + json_len
    if pos < total:
        bin_len, bin_type = struct.unpack_from("<II", data, pos)
        if bin_type != GLB_CHUNK_BIN:
            raise ValueError("second GLB chunk is not BIN")
        binary = data[pos + 8 : pos + 8 + bin_len]
    return doc, binary


_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}
_DTYPES = {5120: "i1", 5121: "u1", 5122: "<i2", 5123: "<u2", 5125: "<u4", 5126: "<f4"}


def _accessor(doc: dict[str, Any], binary: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dtype = np.dtype(_DTYPES[acc["componentType"]])
    width = _COMPONENTS[acc["type"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    arr = np.frombuffer(binary, dtype=dtype, count=acc["count"] * width, offset=start)
    arr = arr.reshape(acc["count"], width).astype(np.float64)
    if acc.get("normalized"):
        arr = arr / float(np.iinfo(dtype).max)
    return arr


def read_glb(path: str | os.PathLike, to_mm: bool = True) -> MeshData:
    """Read the first primitive of a GLB (non-interleaved, as :func:`write_glb` writes).

    Vertices are converted back to millimetres unless ``to_mm`` is False; linear COLOR_0 is
    converted back to sRGB 0..1; TEXCOORD_0 becomes ``uv`` (v up, as OBJ).
    """
    doc, binary = parse_glb(Path(path).read_bytes())
    prim = doc["meshes"][0]["primitives"][0]
    attrs = prim["attributes"]
    pos = _accessor(doc, binary, attrs["POSITION"]) * (1000.0 if to_mm else 1.0)
    normals = _accessor(doc, binary, attrs["NORMAL"]) if "NORMAL" in attrs else None
    colors = None
    if "COLOR_0" in attrs:
        colors = linear_to_srgb(_accessor(doc, binary, attrs["COLOR_0"])[:, :3])
    tris = _accessor(doc, binary, prim["indices"]).astype(np.int64).reshape(-1, 3)
    uv = None
    if "TEXCOORD_0" in attrs:
        st = _accessor(doc, binary, attrs["TEXCOORD_0"])
        uv = np.stack([st[:, 0], 1.0 - st[:, 1]], axis=1)
    return MeshData(vertices=pos, triangles=tris, colors=colors, uv=uv, normals=normals)

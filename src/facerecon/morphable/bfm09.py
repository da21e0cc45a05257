"""``bfm09``: convert the user's Basel Face Model 2009 files to our .npz (the paper's model).

Inputs (none ship with facerecon):

* ``01_MorphableModel.mat``: shapeMU/shapePC/shapeEV, texMU/texPC/texEV over 53,490 vertices,
  micrometres, x, y, z interleaved per vertex;
* ``Exp_Pca.bin`` (Guo et al.): int32 ``exp_dim``, float32 expMU (3 V), float32 expPC
  (3 V x exp_dim, stored component-major) over the V = 53,215 expression vertices; expMU unused;
* the folder of index files released with Deep3DFaceReconstruction:
  ``BFM_exp_idx.mat`` (``trimIndex``: 1-based BFM vertex of each expression vertex),
  ``BFM_front_idx.mat`` (``idx``: 1-based expression vertex of each of the 35,709 front
  vertices), ``facemodel_info.mat`` (``tri`` 1-based front triangles, ``keypoints`` 68 1-based
  front vertices, ``skinmask`` 0/1 per front vertex, ``frontmask2_idx`` 1-based front vertices
  of the photometric region, ``tri_mask2`` 1-based triangles *of that subset*) and
  ``std_exp.txt`` (the 79 published expression standard deviations).

Conversion (REFERENCE.md): id basis = shapePC . shapeEV (first ``n_id``), expression basis =
expPC . std_exp (first ``n_exp``), both in mm (µm / 1000, i.e. the paper's units x 100); mean =
shapeMU re-centred on the mean of the front vertices; albedo mean = texMU / 255, basis =
texPC . texEV / 255 (first ``n_tex``). ``front_triangles`` are gathered the TensorFlow way:
``frontmask2_idx[tri_mask2]`` (tri_mask2 indexes the photometric subset, not the full front
array). Triangles are re-oriented, if needed, so normals point out of the face (+z).
Region labels come from the 68 landmark vertices (:mod:`facerecon.morphable.regions`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facerecon.errors import ModelFileError
from facerecon.geometry import vertex_normals
from facerecon.morphable.model import save_npz
from facerecon.morphable.regions import vertex_regions

VERSION = "bfm09-v1"
INDEX_FILES = ("BFM_exp_idx.mat", "BFM_front_idx.mat", "facemodel_info.mat", "std_exp.txt")


def _loadmat(path: Path) -> dict:
    from scipy.io import loadmat

    if not path.is_file():
        raise ModelFileError(f"BFM09 file not found: {path}")
    try:
        return loadmat(path)
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5)
        raise ModelFileError(f"{path} is a MATLAB v7.3 file; re-save it with -v7") from exc
    except Exception as exc:
        raise ModelFileError(f"cannot read {path}: {exc}") from exc


def _field(mat: dict, key: str, path: Path) -> np.ndarray:
    if key not in mat:
        raise ModelFileError(f"{path.name} has no '{key}' array")
    return np.asarray(mat[key])


def _index(a: np.ndarray, size: int, what: str) -> np.ndarray:
    """1-based MATLAB indices -> 0-based int64, range-checked against ``size``."""
    out = np.asarray(a).astype(np.int64).reshape(-1) - 1
    if out.size and (out.min() < 0 or out.max() >= size):
        raise ModelFileError(f"{what} indices out of range (expected 1..{size})")
    return out


def read_exp_pca(path: Path, n_vertices: int) -> np.ndarray:
    """Read ``Exp_Pca.bin``: expPC ``(3 V, exp_dim)`` float64 (x, y, z interleaved rows)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"expression file not found: {path}")
    raw = path.read_bytes()
    if len(raw) < 4:
        raise ModelFileError(f"{path} is too short for an Exp_Pca.bin")
    exp_dim = int(np.frombuffer(raw[:4], dtype="<i4")[0])
    expected = 4 + 4 * 3 * n_vertices * (1 + exp_dim)
    if exp_dim <= 0 or len(raw) != expected:
        raise ModelFileError(
            f"{path}: size {len(raw)} does not match {n_vertices} vertices x {exp_dim} components"
        )
    pc = np.frombuffer(raw, dtype="<f4", offset=4 + 4 * 3 * n_vertices)
    return pc.reshape(exp_dim, 3 * n_vertices).T.astype(np.float64)


def convert_bfm09(
    mat_path: str | os.PathLike,
    exp_path: str | os.PathLike,
    index_dir: str | os.PathLike,
    n_id: int = 80,
    n_exp: int = 64,
    n_tex: int = 80,
) -> dict:
    """Build the model arrays (kwargs of :class:`MorphableModel`, plus ``name`` and ``meta``)."""
    mat_path, index_dir = Path(mat_path), Path(index_dir)
    missing = [f for f in INDEX_FILES if not (index_dir / f).is_file()]
    if missing:
        raise ModelFileError(f"index folder {index_dir} lacks {', '.join(missing)}")
    bfm = _loadmat(mat_path)
    shape_mu = _field(bfm, "shapeMU", mat_path).astype(np.float64).reshape(-1)
    n_bfm = shape_mu.size // 3
    shape_pc = _field(bfm, "shapePC", mat_path)
    shape_ev = _field(bfm, "shapeEV", mat_path).reshape(-1)
    tex_mu = _field(bfm, "texMU", mat_path).astype(np.float64).reshape(-1)
    tex_pc = _field(bfm, "texPC", mat_path)
    tex_ev = _field(bfm, "texEV", mat_path).reshape(-1)
    if shape_pc.shape[1] < n_id or tex_pc.shape[1] < n_tex:
        raise ModelFileError(f"{mat_path.name} has fewer components than requested")

    trim = _index(
        _field(_loadmat(index_dir / "BFM_exp_idx.mat"), "trimIndex", index_dir), n_bfm, "trimIndex"
    )
    front_in_exp = _index(
        _field(_loadmat(index_dir / "BFM_front_idx.mat"), "idx", index_dir), trim.size, "idx"
    )
    front = trim[front_in_exp]  # BFM vertex of each front vertex
    n = front.size
    info_path = index_dir / "facemodel_info.mat"
    info = _loadmat(info_path)
    tri = _index(_field(info, "tri", info_path), n, "tri").reshape(-1, 3)
    keypoints = _index(_field(info, "keypoints", info_path), n, "keypoints")
    mask2 = _index(_field(info, "frontmask2_idx", info_path), n, "frontmask2_idx")
    tri_mask2 = _index(_field(info, "tri_mask2", info_path), mask2.size, "tri_mask2").reshape(-1, 3)
    skin = _field(info, "skinmask", info_path).reshape(-1) > 0
    if keypoints.size != 68 or skin.size != n:
        raise ModelFileError("facemodel_info.mat: keypoints must be 68 and skinmask one per vertex")
    std_exp = np.loadtxt(index_dir / "std_exp.txt").reshape(-1)
    exp_pc = read_exp_pca(Path(exp_path), trim.size)
    if exp_pc.shape[1] < n_exp or std_exp.size < n_exp:
        raise ModelFileError(f"expression model has fewer than {n_exp} components")

    def gather(flat: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return flat.reshape(-1, 3, flat.shape[-1])[rows]

    mean = shape_mu.reshape(-1, 3)[front] / 1000.0
    mean = mean - mean.mean(axis=0)
    id_basis = gather(shape_pc[:, :n_id] * shape_ev[:n_id], front) / 1000.0
    exp_basis = gather(exp_pc[:, :n_exp] * std_exp[:n_exp], front_in_exp) / 1000.0
    tex_mean = tex_mu.reshape(-1, 3)[front] / 255.0
    tex_basis = gather(tex_pc[:, :n_tex] * tex_ev[:n_tex], front) / 255.0
    front_triangles = mask2[tri_mask2]  # the TensorFlow way: gather the subset first

    # orientation: normals out of the face at the nose tip
    if vertex_normals(mean, tri)[keypoints[30], 2] < 0:
        tri = tri[:, [0, 2, 1]]
        front_triangles = front_triangles[:, [0, 2, 1]]
    front_mask = np.zeros(n, dtype=bool)
    front_mask[mask2] = True
    labels, _, _ = vertex_regions(mean, tri, keypoints)
    return {
        "name": "bfm09",
        "mean_shape": mean.astype(np.float32),
        "id_basis": id_basis.astype(np.float32),
        "exp_basis": exp_basis.astype(np.float32),
        "tex_mean": tex_mean.astype(np.float32),
        "tex_basis": tex_basis.astype(np.float32),
        "triangles": tri,
        "front_triangles": front_triangles,
        "landmarks68": keypoints,
        "vertex_labels": labels,
        "skin_mask": skin,
        "front_mask": front_mask,
        "meta": {
            "version": VERSION,
            "source": "Basel Face Model 2009 + Guo et al. expressions (user files)",
            "units": "mm",
            "n_id": n_id,
            "n_exp": n_exp,
            "n_tex": n_tex,
        },
    }


def import_bfm09(
    mat_path: str | os.PathLike,
    exp_path: str | os.PathLike,
    index_dir: str | os.PathLike,
    out_path: str | os.PathLike,
) -> Path:
    """Convert the user's BFM09 files and write our .npz to ``out_path``; returns the path."""
    kw = convert_bfm09(mat_path, exp_path, index_dir)
    name, meta = kw.pop("name"), kw.pop("meta")
    return save_npz(out_path, name, kw, meta)

"""``ict``: the ICT FaceKit model (USC ICT, MIT licence) converted to our conventions.

Sources (never shipped, never looked up outside what the user points to):

* an ``ict_face_model.npz`` with ``mean (V, 3)`` cm, ``identity_basis (100, V, 3)``,
  ``expression_basis (57, V, 3)``, ``triangles``, ``landmarks68``, ``narrow_face_vertices``
  (a count: the narrow face is vertices ``0 .. count-1``), optional ``expression_names``;
* or an ICT-FaceKit checkout: ``FaceXModel/generic_neutral_mesh.obj``, ``identity000.obj`` ...
  and one OBJ per expression (all full meshes; modes = mesh - neutral), the first 9,409
  vertices (face area) kept, plus a ``landmarks68.txt`` (68 0-based vertex indices) in the
  checkout or in FaceXModel, since the kit does not define the iBUG 68.

Conversion: cm -> mm (x 10); the mean is centred on its mean vertex; the identity modes are
already scaled for N(0, 1) coefficients; expression coefficients are the kit's blendshape weights
(0..1, not Gaussian). ``narrow=True`` (default) keeps only the narrow face area. Regions from
the landmarks (:mod:`facerecon.morphable.regions`); procedural albedo
(:mod:`facerecon.morphable.albedo`).

``load_face_model("ict")`` reads ``$FACERECON_ICT_PATH`` and caches the conversion in
``$FACERECON_CACHE``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from facerecon.cache import cache_dir
from facerecon.errors import ModelFileError
from facerecon.geometry import vertex_normals
from facerecon.morphable.albedo import procedural_albedo
from facerecon.morphable.mesh import remove_unreferenced
from facerecon.morphable.model import save_npz
from facerecon.morphable.regions import vertex_regions

VERSION = "ict-v1"
FACE_AREA_VERTICES = 9409
NARROW_FACE_VERTICES = 6706
ENV = "FACERECON_ICT_PATH"


def read_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``(V, 3)`` and triangles ``(F, 3)`` (polygons fan-split) of an OBJ file."""
    verts, faces = [], []
    with open(path) as f:
        for line in f:
            if line.startswith("v "):
                verts.append([float(x) for x in line.split()[1:4]])
            elif line.startswith("f "):
                idx = [int(tok.split("/")[0]) - 1 for tok in line.split()[1:]]
                faces.extend([idx[0], idx[i], idx[i + 1]] for i in range(1, len(idx) - 1))
    return np.asarray(verts, dtype=np.float64), np.asarray(faces, dtype=np.int64).reshape(-1, 3)


def read_ict_checkout(folder: Path) -> dict[str, np.ndarray]:
    """Arrays of an ICT-FaceKit checkout in the npz layout (cm)."""
    folder = Path(folder)
    model_dir = folder / "FaceXModel" if (folder / "FaceXModel").is_dir() else folder
    neutral_path = model_dir / "generic_neutral_mesh.obj"
    if not neutral_path.is_file():
        raise ModelFileError(
            f"{model_dir} has no generic_neutral_mesh.obj (ICT-FaceKit FaceXModel)"
        )
    lm_file = next(
        (p for p in (folder / "landmarks68.txt", model_dir / "landmarks68.txt") if p.is_file()),
        None,
    )
    if lm_file is None:
        raise ModelFileError(f"add a landmarks68.txt (68 vertex indices) to {folder}")
    neutral, tri = read_obj(neutral_path)
    n = min(FACE_AREA_VERTICES, len(neutral))
    identity = [read_obj(p)[0][:n] - neutral[:n] for p in sorted(model_dir.glob("identity*.obj"))]
    skip = {neutral_path.name}
    exp_paths = sorted(
        p
        for p in model_dir.glob("*.obj")
        if p.name not in skip and not p.name.startswith("identity")
    )
    expressions = [read_obj(p)[0][:n] - neutral[:n] for p in exp_paths]
    tri = tri[(tri < n).all(axis=1)]
    return {
        "mean": neutral[:n],
        "identity_basis": np.stack(identity) if identity else np.zeros((0, n, 3)),
        "expression_basis": np.stack(expressions) if expressions else np.zeros((0, n, 3)),
        "expression_names": np.array([p.stem for p in exp_paths]),
        "triangles": tri,
        "landmarks68": np.loadtxt(lm_file, dtype=np.int64).reshape(-1),
        "narrow_face_vertices": np.array(min(NARROW_FACE_VERTICES, n)),
    }


def read_ict_npz(path: Path) -> dict[str, np.ndarray]:
    keys = ("mean", "identity_basis", "expression_basis", "triangles", "landmarks68")
    try:
        with np.load(path, allow_pickle=False) as d:
            missing = [k for k in keys if k not in d.files]
            if missing:
                raise ModelFileError(f"{path} is not an ICT face model (missing {missing[0]})")
            return {k: d[k] for k in d.files}
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"cannot read ICT model {path}: {exc}") from exc


def convert_ict(source: str | os.PathLike, narrow: bool = True) -> dict:
    """Model arrays (kwargs of :class:`MorphableModel` plus ``name`` and ``meta``) in mm."""
    source = Path(source)
    src = read_ict_checkout(source) if source.is_dir() else read_ict_npz(source)
    mean = np.asarray(src["mean"], dtype=np.float64) * 10.0
    idb = np.moveaxis(np.asarray(src["identity_basis"], dtype=np.float64), 0, -1) * 10.0
    exb = np.moveaxis(np.asarray(src["expression_basis"], dtype=np.float64), 0, -1) * 10.0
    tri = np.asarray(src["triangles"], dtype=np.int64)
    lm = np.asarray(src["landmarks68"], dtype=np.int64).reshape(-1)
    if lm.size != 68 or lm.max() >= len(mean) or lm.min() < 0:
        raise ModelFileError(f"{source}: landmarks68 must be 68 vertex indices")
    if narrow:
        count = int(
            np.asarray(src.get("narrow_face_vertices", NARROW_FACE_VERTICES)).reshape(-1)[0]
        )
        if lm.max() >= count:
            raise ModelFileError(f"{source}: a landmark lies outside the narrow face area")
        tri = tri[(tri < count).all(axis=1)]
    keep, tri = remove_unreferenced(tri, len(mean))
    remap = -np.ones(len(mean), dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    if (remap[lm] < 0).any():
        raise ModelFileError(f"{source}: a landmark vertex belongs to no triangle")
    lm = remap[lm]
    mean, idb, exb = mean[keep], idb[keep], exb[keep]
    mean = mean - mean.mean(axis=0)
    if vertex_normals(mean, tri)[lm[30], 2] < 0:
        tri = tri[:, [0, 2, 1]]
    labels, skin, front = vertex_regions(mean, tri, lm)
    tex_mean, tex_basis, tex_names = procedural_albedo(mean, labels, lm)
    names = [str(x) for x in np.asarray(src.get("expression_names", np.array([]))).reshape(-1)]
    return {
        "name": "ict",
        "mean_shape": mean.astype(np.float32),
        "id_basis": idb.astype(np.float32),
        "exp_basis": exb.astype(np.float32),
        "tex_mean": tex_mean.astype(np.float32),
        "tex_basis": tex_basis.astype(np.float32),
        "triangles": tri,
        "landmarks68": lm,
        "vertex_labels": labels,
        "skin_mask": skin,
        "front_mask": front,
        "front_triangles": tri[front[tri].all(axis=1)],
        "meta": {
            "version": VERSION,
            "source": "ICT FaceKit (USC ICT, MIT licence)",
            "units": "mm",
            "narrow": narrow,
            "expression_names": names,
            "expression_coeffs": "blendshape weights 0..1",
            "tex_components": tex_names,
        },
    }


def import_ict(source: str | os.PathLike, out_path: str | os.PathLike, narrow: bool = True) -> Path:
    """Convert an ICT source (npz or checkout folder) and write our .npz to ``out_path``."""
    kw = convert_ict(source, narrow=narrow)
    name, meta = kw.pop("name"), kw.pop("meta")
    return save_npz(out_path, name, kw, meta)


def ict_cached_path(source: str | os.PathLike | None, narrow: bool = True) -> Path:
    """Path of the converted model for ``source`` (or ``$FACERECON_ICT_PATH``), built if needed."""
    if source is None:
        env = os.environ.get(ENV)
        if not env:
            raise ModelFileError(
                f"ICT model not configured: set {ENV} to your ict_face_model.npz or "
                "ICT-FaceKit folder, or pass the .npz path"
            )
        source = env
    source = Path(source).expanduser().resolve()
    if not source.exists():
        raise ModelFileError(f"ICT model not found at {source}")
    stat = source.stat()
    key = f"{source}|{stat.st_size}|{stat.st_mtime_ns}|{narrow}|{VERSION}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    out = cache_dir() / f"{VERSION}-{digest}.npz"
    if not out.is_file():
        import_ict(source, out, narrow=narrow)
    return out

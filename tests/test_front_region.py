"""The photometric front region: triangles listed in ``front_triangles`` (the TensorFlow
release's gathered subset), not every triangle whose vertices are all in ``front_mask``."""

from __future__ import annotations

import numpy as np
import torch

from facerecon.fit.core import front_pixels
from facerecon.morphable import load_face_model
from facerecon.morphable.model import ARRAY_KEYS, MorphableModel, triangle_membership
from facerecon.render import CameraConfig, render


def test_triangle_membership_ignores_winding_and_missing_rows():
    tri = torch.tensor([[0, 1, 2], [2, 3, 0], [3, 4, 5], [1, 4, 2]])
    subset = torch.tensor([[3, 0, 2], [1, 2, 0], [7, 8, 9]])  # rotated, swapped, absent
    assert triangle_membership(tri, subset).tolist() == [True, True, False, False]
    assert not triangle_membership(tri, subset[:0]).any()


def _with_front(model: MorphableModel, front_triangles: torch.Tensor) -> MorphableModel:
    arrays = model.arrays()
    arrays["front_triangles"] = front_triangles.numpy()
    return MorphableModel(model.name, **{k: arrays[k] for k in ARRAY_KEYS})


def test_photometric_mask_counts_only_front_triangles():
    base = load_face_model("bfm-lite")
    tri = base.triangles
    all_front = base.front_mask[tri].all(dim=1)
    assert torch.equal(base.front_face_mask, all_front)  # bfm-lite lists exactly those
    # Drop every other front triangle from the list (and reverse the winding of the rest): a
    # mask built from front_mask alone would not change; ours must follow the list.
    rows = torch.nonzero(all_front).flatten()
    kept = rows[::2]
    model = _with_front(base, tri[kept][:, [0, 2, 1]])
    assert int(model.front_face_mask.sum()) == len(kept)
    z = torch.zeros
    vertices, albedo = model(z(1, model.layout.n_id), z(1, model.layout.n_exp),
                             z(1, model.layout.n_tex))  # fmt: skip
    out = render(vertices, albedo, tri, z(1, 3), z(1, 3), z(1, 27), CameraConfig())
    ours = front_pixels(model, out.face_idx)[0].numpy() > 0
    full = front_pixels(base, out.face_idx)[0].numpy() > 0
    shown = out.face_idx[0].numpy()
    want = np.isin(shown, kept.numpy())
    assert np.array_equal(ours, want)
    assert ours.sum() < 0.7 * full.sum() and ours.sum() > 0.3 * full.sum()
    assert not (ours & ~full).any()
    # survives a device/dtype move (derived buffer, not saved in the model file)
    assert model.to(torch.float64).front_face_mask.dtype == torch.bool
    assert "front_face_mask" not in model.state_dict()

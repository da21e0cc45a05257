"""MediaPipe Face Mesh (478 points) -> iBUG 68 landmarks through a committed table.

Each iBUG point is a convex combination of at most a few mesh vertices. The table
(``mp68_table.json`` next to this file) was derived by ``scripts/derive_mp68.py``, which fits the
vertex choice and weights against dlib's 68 points and the hand-placed 300-W annotations on
photos (with flips, rotations and rescaling); its fit statistics are stored in the json. Errors
measured on those same photos are in-sample (7.2% NME vs the 300-W annotations); the held-out
figure is ``stats.leave_one_face_out_nme_vs_pts`` (8.3%, eyes 2.5%, jaw 16.8%).
The iBUG jaw (0-16) is a silhouette contour while mesh vertices are fixed on the surface, so the
jaw is the least accurate group (see the per-group errors in the json).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from facerecon.errors import ModelFileError

TABLE_PATH = Path(__file__).with_name("mp68_table.json")

__all__ = ["TABLE_PATH", "load_mp68_table", "mesh_to_68"]


@functools.lru_cache(maxsize=4)
def _load(path: str) -> tuple[np.ndarray, np.ndarray, dict]:
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"478->68 mapping table not found: {p}")
    try:
        data = json.loads(p.read_text())
        pts = data["points"]
        k = max(len(e["vertices"]) for e in pts)
        idx = np.zeros((68, k), dtype=np.int64)
        wts = np.zeros((68, k), dtype=np.float64)
        for e in pts:
            n = len(e["vertices"])
            idx[e["ibug"], :n] = e["vertices"]
            wts[e["ibug"], :n] = e["weights"]
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise ModelFileError(f"malformed 478->68 mapping table {p}: {e}") from e
    if len(pts) != 68 or not np.allclose(wts.sum(1), 1.0, atol=1e-6):
        raise ModelFileError(
            f"malformed 478->68 mapping table {p}: need 68 rows of weights summing to 1"
        )
    idx.setflags(write=False)
    wts.setflags(write=False)
    return idx, wts, data


def load_mp68_table(
    path: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The table as ``indices (68, K)`` int64, ``weights (68, K)`` float64 (rows sum to 1), json."""
    return _load(str(path or TABLE_PATH))


def mesh_to_68(mesh: Any, path: str | Path | None = None) -> Any:
    """Map mesh points ``(..., 478, D)`` (numpy or torch) to iBUG ``(..., 68, D)``."""
    idx, wts, _ = load_mp68_table(path)
    if hasattr(mesh, "new_tensor"):
        import torch

        i = torch.tensor(idx, device=mesh.device)  # copy: the cached table is read-only
        w = mesh.new_tensor(wts)
        return (mesh[..., i, :] * w[..., None]).sum(-2)
    m = np.asarray(mesh)
    return (m[..., idx, :] * wts[..., None]).sum(-2)

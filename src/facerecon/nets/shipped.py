"""Where the weights that ship with facerecon live, per face model.

``src/facerecon/weights/`` is where fp16 files named ``rnet_<model>.pt``, ``cnet_<model>.pt``,
``mvr_<model>.pt`` and ``pgn_<model>.pt`` go (``<model>`` is a face-model name such as
``bfm-lite``), next to a ``README.md`` with the exact commands, data and step counts that
produced them. Today ``bfm-lite`` has all four (CPU-trained;
see that README for what they do and do not do); for any other model every lookup returns None
and ``reconstruct`` defaults to fitting. Only named models can have shipped weights: a model
given as a file path never matches.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["WEIGHTS_DIR", "shipped_weights"]

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
KINDS = ("rnet", "cnet", "mvr", "pgn")


def shipped_weights(
    kind: str, model: str, root: str | os.PathLike[str] | None = None
) -> Path | None:
    """The shipped ``kind`` (``"rnet"``, ``"cnet"``, ``"mvr"`` or ``"pgn"``) weights for face model
    ``model``, or None when none ship (or ``model`` is a path). ``root`` defaults to
    :data:`WEIGHTS_DIR`."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    name = str(model)
    if not name or "/" in name or os.sep in name or name.endswith(".npz"):
        return None
    path = Path(root if root is not None else WEIGHTS_DIR) / f"{kind}_{name}.pt"
    return path if path.is_file() else None

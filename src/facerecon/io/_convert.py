"""Array conversion helpers: accept numpy arrays, torch tensors or nested lists."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """Return ``x`` as a numpy array (torch tensors are detached and moved to the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def check_shape(name: str, a: np.ndarray, ndim: int, last: int | None) -> None:
    """Raise ``ValueError`` unless ``a`` has ``ndim`` dims and last dim ``last`` (when given)."""
    if a.ndim != ndim or (last is not None and a.shape[-1] != last):
        want = f"(..., {last})" if last is not None else f"{ndim} dims"
        raise ValueError(f"{name} must have shape {want} with {ndim} dims, got {a.shape}")

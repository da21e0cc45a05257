"""Atomic file writes: a crash or an error never leaves half a file under the final name.

One rule everywhere: the data goes to a temporary file in the destination's folder (so the final
:func:`os.replace` is an atomic rename on one file system), named ``.STEM.tmpPID SUFFIX`` (hidden,
the writing process's id, and the destination's extension kept, because writers such as
``np.savez`` append theirs), e.g. ``face.npz`` -> ``.face.tmp4242.npz``. On any error the
temporary file is removed and the error propagates; the destination keeps its old content.

Torch files: :func:`facerecon.nets.weights_file.atomic_save` is ``torch.save`` through
:func:`atomic_write`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_savez", "atomic_write", "atomic_write_bytes", "atomic_write_text", "temp_path"]


def temp_path(path: str | os.PathLike) -> Path:
    """The temporary file :func:`atomic_write` writes before renaming it to ``path``."""
    p = Path(path)
    return p.with_name(f".{p.stem}.tmp{os.getpid()}{p.suffix}")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` to write a temporary file, then rename it to ``path``.

    Args:
        path: destination; missing parent folders are created.
        write: writes the whole file at the path it is given (see :func:`temp_path`).

    Returns:
        ``path`` as a :class:`Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def atomic_savez(path: str | os.PathLike, arrays: dict[str, Any], compressed: bool = False) -> Path:
    """``np.savez`` (or ``np.savez_compressed``) of ``arrays`` to ``path`` atomically.

    ``path`` is used as given (``np.savez`` would append ``.npz`` to a name without it).
    """
    save = np.savez_compressed if compressed else np.savez

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            save(fh, **arrays)

    return atomic_write(path, write)

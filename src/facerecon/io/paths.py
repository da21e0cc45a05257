"""Output-path checks shared by every writer in :mod:`facerecon.io`."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from facerecon.errors import FaceReconError, OutputExistsError

__all__ = ["check_outputs_free", "ensure_writable", "prepare_out_dir"]


def ensure_writable(path: str | os.PathLike, overwrite: bool) -> Path:
    """Check that ``path`` may be written and create its parent folder.

    Raises :class:`~facerecon.errors.OutputExistsError` when a file already exists at ``path``
    and ``overwrite`` is False. Returns ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(f"{path} is a directory; expected a file path")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def check_outputs_free(paths: Iterable[Path], overwrite: bool) -> None:
    """Refuse before any work when an output exists and ``overwrite`` is off; the one-line
    message names the first existing path."""
    if overwrite:
        return
    existing = [p for p in paths if Path(p).exists()]
    if existing:
        more = f" (and {len(existing) - 1} more outputs)" if len(existing) > 1 else ""
        raise OutputExistsError(f"{existing[0]} exists{more}; pass --overwrite to replace it")


def prepare_out_dir(out_dir: Path) -> None:
    """Create ``out_dir``; a one-line error when it cannot be a folder."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FaceReconError(f"--out {out_dir} is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FaceReconError(f"cannot create --out {out_dir}: {exc.strerror or exc}") from None

"""Output-path checks shared by every writer in :mod:`facerecon.io`."""

from __future__ import annotations

import os
from pathlib import Path

from facerecon.errors import OutputExistsError


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

"""Where facerecon caches what it builds once (face models, converted weights)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$FACERECON_CACHE`` or ``~/.cache/facerecon`` (not created here)."""
    return Path(os.environ.get("FACERECON_CACHE") or Path.home() / ".cache" / "facerecon")

"""Shared test fixtures: paths to ../shared data (tests may read it; the product never does)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__import__("os").environ.get("FACERECON_SHARED", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.fixture(scope="session")
def ict_npz(shared_data: Path) -> Path:
    return shared_data / "ict_face_model" / "ict_face_model.npz"


@pytest.fixture(scope="session")
def faces_68pt(shared_data: Path) -> Path:
    return shared_data / "faces_68pt"

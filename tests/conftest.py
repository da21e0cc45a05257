"""Shared test fixtures: paths to ../shared data (tests may read it; the product never does), the
default face model, the ICT model, the 300-W photos and one-thread torch for small workloads."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACERECON_SHARED", REPO.parent / "shared")).resolve()
#: the annotated photos of ``faces_68pt``: stem -> image extension (each has ``STEM.pts``)
PHOTOS_68PT = {"einstein": "jpg", "breakingbad": "jpg", "takeo": "ppm"}


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


@pytest.fixture(scope="module")
def photos_68pt(faces_68pt: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """stem -> (photo ``(H, W, 3)`` uint8 RGB, hand-placed ``lm68 (68, 2)`` 0-based pixels)."""
    from facerecon.detect import load_image
    from facerecon.io import read_pts

    return {
        n: (load_image(faces_68pt / f"{n}.{e}"), read_pts(faces_68pt / f"{n}.pts"))
        for n, e in PHOTOS_68PT.items()
    }


@pytest.fixture(scope="module")
def model():
    """The default face model (bfm-lite), one per test module; never skipped (a broken default
    model must fail the tests)."""
    from facerecon.morphable import load_face_model

    return load_face_model("bfm-lite")


@pytest.fixture(scope="module")
def ict(ict_npz: Path):
    """The ICT-FaceKit model from the shared npz, one per test module."""
    from facerecon.morphable import load_face_model

    if not ict_npz.is_file():
        pytest.skip(f"ICT npz absent: {ict_npz}")
    return load_face_model(ict_npz)


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread during a test (small workloads on a busy 2-core machine)."""
    with _torch_threads(1):
        yield


@pytest.fixture(scope="module")
def one_torch_thread_module() -> Iterator[None]:
    """One intra-op thread for a whole module, its module fixtures included."""
    with _torch_threads(1):
        yield


def _run_python(code: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


@pytest.fixture
def fresh_python() -> Callable[..., subprocess.CompletedProcess]:
    """``fresh_python(code, timeout=120)``: ``code`` run by this Python in a fresh process
    (stdout and stderr captured as text), for what a test process cannot show: imports not
    yet made, forking without threads, native output on the process's stderr."""
    return _run_python

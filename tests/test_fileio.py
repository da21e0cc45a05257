"""facerecon.fileio: one atomic-write rule (hidden temp file next to the target, then rename)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from facerecon.fileio import atomic_savez, atomic_write, atomic_write_text, temp_path


def test_temp_path_is_hidden_next_to_the_target_and_keeps_the_extension(tmp_path):
    assert temp_path(tmp_path / "face.npz") == tmp_path / f".face.tmp{os.getpid()}.npz"


def test_atomic_writes_replace_and_create_folders(tmp_path):
    path = atomic_write_text(tmp_path / "a" / "b.txt", "one")
    assert atomic_write_text(path, "two") == path and path.read_text() == "two"
    z = atomic_savez(tmp_path / "x.npz", {"v": np.arange(3)}, compressed=True)
    np.testing.assert_array_equal(np.load(z)["v"], np.arange(3))
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b.txt", "x.npz"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "keep.txt", "old")

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]

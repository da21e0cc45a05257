"""Output-path checks shared by every writer in :mod:`facerecon.io`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from facerecon.errors import FaceReconError, OutputExistsError

__all__ = [
    "LOCK_NAME",
    "OutputLock",
    "check_outputs_free",
    "check_writable",
    "ensure_writable",
    "prepare_out_dir",
]


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


LOCK_NAME = ".facerecon.lock"


class OutputLock:
    """A run's hold on its output folder (``fcntl.flock`` of ``OUT/.facerecon.lock``, which
    holds the owner's pid), from before the existence checks until the summary is written.

    A whole run takes the folder exclusively; a shard (``reconstruct --shard I/N``) takes it
    shared (shards of one split write disjoint files into one folder) plus its own shard
    lock exclusively. A second run on a held folder stops at once with a one-line error, so
    two runs never write, check or clean up each other's files. The kernel drops a lock when
    its process ends (also on a crash or a kill); an exclusive holder removes its lock file
    when done, so a refused or finished run leaves the folder as it was.

    Args:
        out_dir: the output folder (created).
        shard: ``(i, n)`` for a shard's run, None for a whole run.
    """

    def __init__(self, out_dir: str | os.PathLike, shard: tuple[int, int] | None = None):
        self.out_dir = Path(out_dir)
        self.shard = shard
        self._held: list[tuple[int, Path | None]] = []  # (fd, path to remove when released)

    def _take(self, name: str, exclusive: bool) -> None:
        import fcntl

        path = self.out_dir / name
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise FaceReconError(
                    f"cannot write to --out {self.out_dir}: {exc.strerror or exc}"
                ) from None
            try:
                fcntl.flock(fd, mode)
            except OSError:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise FaceReconError(
                    f"another facerecon run (pid {owner}) is writing to {self.out_dir}; wait "
                    "for it to finish or choose another --out"
                ) from None
            try:  # the file we locked must still be the one at the path (its holder may
                same = os.stat(path).st_ino == os.fstat(fd).st_ino  # have removed it)
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        if exclusive:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._held.append((fd, path if exclusive else None))

    def __enter__(self) -> OutputLock:
        prepare_out_dir(self.out_dir)
        try:
            self._take(LOCK_NAME, exclusive=self.shard is None)
            if self.shard is not None:
                i, n = self.shard
                self._take(f".facerecon.shard-{i}-of-{n}.lock", exclusive=True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        while self._held:
            fd, path = self._held.pop()
            if path is not None:
                with contextlib.suppress(OSError):  # before unlocking: see _take
                    path.unlink(missing_ok=True)
            os.close(fd)  # closing releases the lock


def check_writable(out_dir: str | os.PathLike) -> None:
    """A one-line error, before any work, when files cannot be created in ``out_dir``
    (no permission, a read-only file system, a full disk)."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".facerecon-check-"):
            pass
    except OSError as exc:
        raise FaceReconError(f"cannot write to --out {out_dir}: {exc.strerror or exc}") from None

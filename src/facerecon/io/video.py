"""Video files: decoding frames and encoding an overlay clip (OpenCV's FFmpeg video IO).

OpenCV (``opencv-contrib-python-headless``, a declared dependency, pinned ``<5``) reads every
container and codec its bundled FFmpeg does (mp4/H.264, mov, avi, mkv, webm) and writes MPEG-4
Part 2 (``mp4v``) MP4 files without any system library; no second video stack is needed.

* :func:`probe_video` -> :class:`VideoInfo` (frame count, rate, size), or a one-line
  :class:`facerecon.errors.ImageError` for a missing, corrupt or empty file.
* :func:`read_frames` yields :class:`Frame` (index, time, RGB uint8), every frame or
  resampled to ``fps``; a file that opens but yields no frame is the same one-line error.
* :class:`VideoWriter`: RGB frames -> MP4, written to a temporary name and renamed on
  :meth:`close` (a crash never leaves a half clip under the final name).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerecon.errors import ImageError

__all__ = [
    "VIDEO_SUFFIXES",
    "Frame",
    "VideoInfo",
    "VideoWriter",
    "is_video",
    "probe_video",
    "read_frames",
]

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def is_video(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is named like a video file (by suffix)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    """What the container says: ``frames`` (0 when it does not say), ``fps``, ``width``,
    ``height``."""

    frames: int
    fps: float
    width: int
    height: int


@dataclass
class Frame:
    """One decoded frame: its index in the file, its time in seconds, ``(H, W, 3)`` uint8 RGB."""

    index: int
    time: float
    image: np.ndarray


def _open(path: Path):
    import cv2

    if not path.is_file():
        raise ImageError(f"{path}: video not found")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file, not a video")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise ImageError(f"{path}: cannot decode the video (corrupt or unsupported format)")
    return cap


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Frame count, rate and size of a video; one-line :class:`ImageError` when unreadable."""
    import cv2

    cap = _open(Path(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        info = VideoInfo(
            max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)),
            fps if np.isfinite(fps) and fps > 0 else 25.0,
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
        )
    finally:
        cap.release()
    return info


def read_frames(
    path: str | os.PathLike[str], fps: float | None = None, max_frames: int | None = None
) -> Iterator[Frame]:
    """Decode a video's frames in order.

    Args:
        path: the video file.
        fps: keep about ``fps`` frames per second (the frame nearest each tick of a ``1/fps``
            clock); None keeps every frame. Rates above the file's keep every frame.
        max_frames: stop after this many kept frames.

    Yields:
        :class:`Frame` with ``index`` the frame's position in the file.

    Raises:
        ImageError: missing, empty, corrupt or frame-less file (one line).
    """
    import cv2

    p = Path(path)
    if fps is not None and not fps > 0:
        raise ImageError(f"--fps must be positive, got {fps}")
    cap = _open(p)
    rate = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    rate = rate if np.isfinite(rate) and rate > 0 else 25.0
    step = 1.0 if fps is None or fps >= rate else rate / float(fps)
    kept, index, next_pick = 0, 0, 0.0
    try:
        while max_frames is None or kept < max_frames:
            ok, bgr = cap.read()
            if not ok or bgr is None:
                break
            if index + 0.5 >= next_pick:
                next_pick += step
                if bgr.ndim == 2:
                    bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
                yield Frame(index, index / rate, np.ascontiguousarray(bgr[..., 2::-1]))
                kept += 1
            index += 1
    finally:
        cap.release()
    if index == 0:
        raise ImageError(f"{p}: the video has no decodable frame")


class VideoWriter:
    """Write RGB frames to an MP4 (``mp4v``) through a temporary file renamed on close.

    Args:
        path: final file name (its folder must exist).
        fps: frame rate.
        size: ``(width, height)``; frames of another size are resized.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, size: tuple[int, int]):
        import cv2

        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp{self.path.suffix}")
        self.size = (int(size[0]) // 2 * 2, int(size[1]) // 2 * 2)  # codecs want even sizes
        self._w = cv2.VideoWriter(
            str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), self.size
        )
        if not self._w.isOpened():
            raise ImageError(f"{self.path}: cannot open a video writer (mp4v)")
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        img = np.asarray(rgb, np.uint8)
        if (img.shape[1], img.shape[0]) != self.size:
            img = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
        self._w.write(np.ascontiguousarray(img[..., ::-1]))
        self.frames += 1

    def close(self) -> Path:
        """Finish the file and move it to ``path``."""
        self._w.release()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        self._w.release()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

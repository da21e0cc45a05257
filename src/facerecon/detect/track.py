"""Face tracking through a video: landmarks from the previous frame's, re-detection when lost.

A full-frame detection costs tens of milliseconds per frame (HOG on 1080p: ~200 ms); the
68-point shape predictor on a known box costs ~2 ms. :class:`FaceTracker` therefore detects
once, then places each frame's predictor box from the previous frame's landmarks (a square of
0.95x the landmarks' extent, centred 6 % above their centre: the relation of dlib's HOG boxes
to their landmarks, measured on the ``faces_68pt`` photos), and checks the result: the new
landmarks must stay inside the frame, keep their size within ``max_scale_change`` and move
less than ``max_shift`` of the face size. A failed check, or every ``redetect_every`` frames,
runs the detector on the whole frame; when it finds nothing the frame has no face (status
``"lost"``) and the next frame detects again.

Shapes: frames ``(H, W, 3)`` uint8 RGB; landmarks ``(68, 2)`` pixels (OpenCV convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facerecon.detect.faces import DetectorConfig, FaceDetector, make_detector

__all__ = ["BOX_CENTRE", "BOX_SIZE", "FaceTracker", "TrackConfig", "TrackResult", "box_from_landmarks"]

BOX_SIZE = 0.95  # predictor box side / landmark extent (dlib HOG boxes, faces_68pt)
BOX_CENTRE = (0.0, -0.06)  # box centre - landmark centre, in landmark extents


def box_from_landmarks(lm68: np.ndarray) -> np.ndarray:
    """``(4,)`` x0, y0, x1, y1 (x1, y1 exclusive): the predictor box of a face whose 68
    landmarks are ``lm68``."""
    lo, hi = lm68.min(0), lm68.max(0)
    size = float((hi - lo).max())
    c = (lo + hi) / 2 + np.asarray(BOX_CENTRE) * size
    h = BOX_SIZE * size / 2
    return np.array([c[0] - h, c[1] - h, c[0] + h, c[1] + h])


@dataclass
class TrackConfig:
    """Tracking checks (module docstring).

    Attributes:
        redetect_every: frames between full-frame detections while tracking (0: only when
            the track is lost); a detection whose face overlaps the track keeps the track's
            identity; one elsewhere (another, larger face) does not replace it.
        max_scale_change: largest relative change of the landmarks' extent between frames.
        max_shift: largest move of the landmarks' centre between frames, in face sizes.
        min_size: smallest face (landmark extent, pixels) that is tracked.
    """

    redetect_every: int = 30
    max_scale_change: float = 0.3
    max_shift: float = 0.4
    min_size: float = 24.0


@dataclass
class TrackResult:
    """One frame's face: ``lm68 (68, 2)`` or None, ``status`` (``"detected"``, ``"tracked"``,
    ``"lost"``) and the detector that found the track."""

    lm68: np.ndarray | None
    status: str
    detector: str = ""


class FaceTracker:
    """Track the largest face of the first frame where one is found.

    Args:
        detector: full-frame detector (the CLI's ``--detector``).
        config: tracking checks.
        landmarker: the dlib 68-point predictor used between detections (default: a dlib HOG
            detector object, whose predictor loads on first use).
    """

    def __init__(
        self,
        detector: FaceDetector,
        config: TrackConfig | None = None,
        landmarker=None,
    ) -> None:
        self.detector = detector
        self.config = config or TrackConfig()
        self.landmarker = landmarker or make_detector(DetectorConfig(backend="dlib"))
        self.prev: np.ndarray | None = None
        self.since_detect = 0
        self.detector_name = ""

    def reset(self) -> None:
        self.prev = None
        self.since_detect = 0

    def _plausible(self, lm: np.ndarray, prev: np.ndarray, shape: tuple[int, ...]) -> bool:
        c = self.config
        h, w = shape[:2]
        if not np.isfinite(lm).all():
            return False
        lo, hi = lm.min(0), lm.max(0)
        if lo[0] < -0.1 * w or lo[1] < -0.1 * h or hi[0] > 1.1 * w or hi[1] > 1.1 * h:
            return False
        size = float((hi - lo).max())
        psize = float((prev.max(0) - prev.min(0)).max())
        if size < c.min_size or abs(size / max(psize, 1e-6) - 1) > c.max_scale_change:
            return False
        shift = np.linalg.norm((lo + hi) / 2 - (prev.min(0) + prev.max(0)) / 2)
        return shift <= c.max_shift * psize

    def _detect(self, image: np.ndarray) -> np.ndarray | None:
        faces = self.detector.detect(image, all_faces=self.prev is not None)
        if not faces:
            return None
        if self.prev is None:
            face = faces[0]
        else:  # keep following the tracked face
            centre = self.prev.mean(0)
            face = min(faces, key=lambda f: np.linalg.norm(f.lm68.mean(0) - centre))
            size = float((self.prev.max(0) - self.prev.min(0)).max())
            if np.linalg.norm(face.lm68.mean(0) - centre) > size:
                return None
        self.detector_name = face.detector
        return np.asarray(face.lm68, np.float64)

    def update(self, image: np.ndarray) -> TrackResult:
        """The face in the next frame."""
        c = self.config
        if self.prev is not None:
            lm = self.landmarker.dlib_landmarks(image, box_from_landmarks(self.prev))
            due = c.redetect_every > 0 and self.since_detect + 1 >= c.redetect_every
            if self._plausible(lm, self.prev, image.shape) and not due:
                self.prev = lm
                self.since_detect += 1
                return TrackResult(lm, "tracked", self.detector_name)
            found = self._detect(image)
            if found is None and not due:
                self.reset()
                return TrackResult(None, "lost")
            if found is None:  # scheduled check found nothing near: keep the plausible track
                if self._plausible(lm, self.prev, image.shape):
                    self.prev = lm
                    self.since_detect = 0
                    return TrackResult(lm, "tracked", self.detector_name)
                self.reset()
                return TrackResult(None, "lost")
            self.prev, self.since_detect = found, 0
            return TrackResult(found, "detected", self.detector_name)
        found = self._detect(image)
        if found is None:
            return TrackResult(None, "lost")
        self.prev, self.since_detect = found, 0
        return TrackResult(found, "detected", self.detector_name)

    def close(self) -> None:
        self.detector.close()
        self.landmarker.close()

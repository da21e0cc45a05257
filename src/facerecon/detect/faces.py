"""Face detection and 68-point iBUG landmarks.

Backends:

* ``"dlib"`` (default, :mod:`facerecon.detect.dlib_backend`): dlib's HOG frontal detector or
  its MMOD CNN detector, then the 68-point shape predictor (MMOD boxes re-centred first).
* ``"mediapipe"`` (:mod:`facerecon.detect.mediapipe_backend`): MediaPipe Face Mesh (478
  points with depth); ``Face.mp478`` holds them in pixels and ``Face.lm68`` is
  derived through the committed 478 -> 68 table (:mod:`facerecon.detect.mp68`).

Coordinates follow OpenCV: pixel (row r, col c) has its centre at ``(x=c, y=r)``.
``Face.box`` is ``(x0, y0, x1, y1)`` with ``x1 - x0`` the box width (x1, y1 exclusive).

Each backend is a :class:`FaceDetector` with one contract, ``detect(image, all_faces) ->
list[Face]``, and owns its loaded models (the pytorch3d rasterizer pattern):
:class:`facerecon.detect.dlib_backend.DlibDetector` and
:class:`facerecon.detect.mediapipe_backend.MediapipeDetector`. :func:`make_detector` builds the
one a :class:`DetectorConfig` names; :func:`get_detector` is an ``lru_cache``'d factory for
convenience and :func:`detect` uses it.
"""

from __future__ import annotations

import abc
import functools
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from facerecon.errors import ImageError, NoFaceError
from facerecon.timing import StageTimes

from .image_io import to_rgb_uint8

__all__ = [
    "BACKENDS",
    "DEFAULT_CHAIN",
    "DEFAULT_DETECTOR",
    "DETECTOR_CHOICES",
    "FAST_CHAIN",
    "VIEWS_DETECTOR",
    "DetectorConfig",
    "Face",
    "FaceDetector",
    "FallbackDetector",
    "detect",
    "detect_one",
    "detector_for",
    "get_detector",
    "make_detector",
    "preload",
]


@dataclass
class Face:
    """One detected face, in the pixel coordinates of the image passed to :func:`detect`.

    Attributes:
        box: ``(4,)`` float ``x0, y0, x1, y1`` (x1, y1 exclusive, so ``x1 - x0`` is the width).
        lm68: ``(68, 2)`` float iBUG-68 points ``(x, y)`` in pixels (0-based, OpenCV).
        score: detector confidence (HOG: SVM margin; MMOD: CNN confidence; MediaPipe:
            face-detection score, or 1.0 when the mesh was run without a detector).
        mp478: ``(478, 3)`` MediaPipe mesh points in pixels (z scaled like x, more negative =
            closer to the camera), or None for dlib.
        detector: which detector found it (:attr:`FaceDetector.name`, e.g. ``"dlib hog"``).
        alt_lm68: other detectors' 68 landmarks of the same face, ``{detector name: (68, 2)}``
            pixels (:class:`FallbackDetector`'s second opinion), for fits that weigh both.
    """

    box: np.ndarray
    lm68: np.ndarray
    score: float
    mp478: np.ndarray | None = None
    detector: str = ""
    alt_lm68: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)


@dataclass
class DetectorConfig:
    """Settings of a :class:`FaceDetector`.

    Attributes:
        backend: ``"dlib"`` or ``"mediapipe"``.
        detector: dlib face detector, ``"hog"``, ``"mmod"`` or ``"mp-box"`` (MediaPipe's face
            detector's boxes, dlib's landmarks); ignored by mediapipe.
        model_dir: folder with the dlib ``.dat`` files; None = ``face_recognition_models``.
        max_side: the detector runs on a copy downscaled so its longer side is at most this
            (landmarks are still predicted on the full-resolution image). None = backend
            default: 2048 for HOG, 1024 for MMOD (CPU cost), 1920 for mediapipe.
        upsample: HOG/MMOD pyramid upsampling. None = automatic: HOG runs at 0 and, when the
            detection copy's longer side is <= ``upsample_below``, also at 1 (so faces down to
            ~40 px are found; einstein.jpg's ~85 px face and the 3/4-view face in
            breakingbad.jpg need both scales), merging by NMS.
        upsample_below: see ``upsample``.
        min_score: faces scoring below this are dropped (dlib HOG uses 0.0 as its threshold).
        max_faces: mediapipe's ``max_num_faces``.
        mmod_passes: at most this many shape-predictor passes on an MMOD box, each re-centring
            the box on the previous pass's inner landmarks (1 = the raw MMOD box, as dlib's
            examples do). See :func:`mmod_landmarks`.
        first_pass: in a :class:`FallbackDetector` chain, a cheap pass for the largest face
            only: skipped when every face is asked for (``all_faces``).
    """

    backend: str = "dlib"
    detector: str = "hog"
    model_dir: str | None = None
    max_side: int | None = None
    upsample: int | None = None
    upsample_below: int = 2048
    min_score: float = 0.0
    max_faces: int = 8
    mmod_passes: int = 5
    first_pass: bool = False


class FaceDetector(abc.ABC):
    """One detection backend: ``detect(image, all_faces) -> list[Face]``, holding its loaded
    models (loaded on first use, released by :meth:`close`). Not thread-safe.

    Example:
        >>> det = make_detector(DetectorConfig(backend="dlib", detector="hog"))
        >>> faces = det.detect(image)            # largest face only
        >>> faces = det.detect(image, all_faces=True)
    """

    backend: ClassVar[str]  # the DetectorConfig.backend value naming this class

    def __init__(self, config: DetectorConfig | None = None):
        self.config = config or DetectorConfig(backend=self.backend)
        self._models: dict[str, Any] = {}  # loaded on first use by the backend
        # wall time of the last detect() call: "detect" (boxes) and "landmarks" (the points)
        self.seconds = StageTimes()

    @property
    def name(self) -> str:
        """What messages and summaries call this detector (e.g. ``"dlib hog"``)."""
        return self.backend

    def detect(self, image: np.ndarray, all_faces: bool = False) -> list[Face]:
        """Detect faces in ``(H, W, 3)`` uint8 RGB (other layouts are coerced).

        Returns:
            Faces sorted largest first (area weighted by ``exp(score)``, see
            :func:`facerecon.detect.boxes.rank`); only the first unless ``all_faces``.
            Empty if none.
        """
        self.seconds = StageTimes()
        faces = self._detect(to_rgb_uint8(image), all_faces)
        for f in faces:
            f.detector = f.detector or self.name
        return faces

    @abc.abstractmethod
    def _detect(self, image: np.ndarray, all_faces: bool) -> list[Face]:
        """:meth:`detect` on a coerced ``(H, W, 3)`` uint8 RGB image."""

    def close(self) -> None:
        """Release loaded models (mediapipe graphs hold native resources)."""
        for m in self._models.values():
            if hasattr(m, "close"):
                m.close()
        self._models.clear()


def backends() -> dict[str, type[FaceDetector]]:
    """``DetectorConfig.backend`` -> class (imported on first use)."""
    from .dlib_backend import DlibDetector
    from .mediapipe_backend import MediapipeDetector

    return {"dlib": DlibDetector, "mediapipe": MediapipeDetector}


#: the backend names :func:`make_detector` accepts
BACKENDS = ("dlib", "mediapipe")


def make_detector(config: DetectorConfig | None = None) -> FaceDetector:
    """The backend ``config.backend`` names, configured by ``config``."""
    config = config or DetectorConfig()
    if config.backend not in BACKENDS:
        raise ValueError(f"unknown backend {config.backend!r}; use 'dlib' or 'mediapipe'")
    return backends()[config.backend](config)


#: the default chain of :class:`FallbackDetector`: dlib's HOG (the landmarks the fit is
#: calibrated on; it upsamples once for photos up to 2048 px), HOG upsampled twice (faces of
#: ~20 px), MediaPipe (turned faces; on photo-like renders at 45 degrees of yaw it finds 83-100 %
#: where HOG finds 57-70 %, with landmarks 13-15 % of the inter-ocular distance off against
#: MMOD's 21-25 %), then dlib's MMOD CNN (found the most faces there, but its landmarks of
#: turned faces are the worst of the three).
DEFAULT_CHAIN = (
    DetectorConfig(backend="dlib", detector="hog"),
    DetectorConfig(backend="dlib", detector="hog", upsample=2, max_side=1024),
    DetectorConfig(backend="mediapipe"),
    DetectorConfig(backend="dlib", detector="mmod"),
)


class FallbackDetector(FaceDetector):
    """Detectors tried in order until one finds a face (``Face.detector`` says which).

    Args:
        configs: the chain (default :data:`DEFAULT_CHAIN`); each is built on first use.
        second_opinion: a detector also run on every photo where another one found the faces
            (default MediaPipe); its landmarks of the same face (inner-landmark centres within
            a quarter of the face's width) go into ``Face.alt_lm68``. Its errors are largely
            independent of dlib's: fitting both (each with its own calibration) brought
            bfm-lite shapes from 0.93 to 0.90 of the mean face's error on photo-like renders
            (50 images, |yaw| <= 60). None: off.
    """

    backend: ClassVar[str] = "auto"

    def __init__(
        self,
        configs: tuple[DetectorConfig, ...] = DEFAULT_CHAIN,
        second_opinion: DetectorConfig | None = DetectorConfig(backend="mediapipe"),  # noqa: B008
    ):
        super().__init__(DetectorConfig(backend="dlib"))
        self.configs = tuple(configs)
        self.second_opinion = second_opinion
        self._chain: list[FaceDetector | None] = [None] * len(self.configs)
        self._second: FaceDetector | None = None

    @property
    def name(self) -> str:
        return "auto"

    def _detector(self, k: int) -> FaceDetector:
        if self._chain[k] is None:
            det = make_detector(self.configs[k])
            second = self._second_detector() if self.configs[k].detector == "mp-box" else None
            if second is not None and second.backend == "mediapipe":
                det.use_mediapipe(second)  # one MediaPipe search per photo, for both uses
            self._chain[k] = det
        return self._chain[k]

    def _second_detector(self) -> FaceDetector | None:
        if self._second is None and self.second_opinion is not None:
            self._second = make_detector(self.second_opinion)
        return self._second

    def _detect(self, image: np.ndarray, all_faces: bool) -> list[Face]:
        for k, cfg in enumerate(self.configs):
            if all_faces and cfg.first_pass:
                continue  # a cheap first pass would stop the search at the first face found
            det = self._detector(k)
            faces = det.detect(image, all_faces=all_faces)
            self.seconds.merge(det.seconds)
            if faces:
                if cfg.upsample is not None and cfg.upsample > 1:
                    for f in faces:
                        f.detector = f"{f.detector} x{cfg.upsample}"
                with self.seconds.timed("landmarks"):
                    self._add_second_opinion(image, faces)
                return faces
        return []

    def _add_second_opinion(self, image: np.ndarray, faces: list[Face]) -> None:
        second = self._second_detector()
        if second is None:
            return
        if all(f.detector.split()[0] == second.name.split()[0] for f in faces):
            return
        # one face: the second detector's own best (its search stops at the coarsest tile level
        # with a face); several: all of its faces, to match them by position
        others = second.detect(image, all_faces=len(faces) > 1)
        for f in faces:
            centre = f.lm68[17:].mean(0)
            best = min(others, key=lambda o: np.linalg.norm(o.lm68[17:].mean(0) - centre),
                       default=None)  # fmt: skip
            if best is not None and best.detector != f.detector:
                gap = np.linalg.norm(best.lm68[17:].mean(0) - centre)
                if gap < 0.25 * max(f.width, 1.0):
                    f.alt_lm68[best.detector] = best.lm68

    def close(self) -> None:
        for d in [*self._chain, self._second]:
            if d is not None:
                d.close()
        self._chain = [None] * len(self.configs)
        self._second = None


#: :data:`DEFAULT_CHAIN` after a cheap first pass (``--detector fast``): MediaPipe's face
#: detector for the box (~6 ms at any photo size, against ~0.8 s for HOG's two passes on a
#: 1080p photo), dlib's 68 points in it, the box re-centred on the inner points as for MMOD
#: (``Face.detector`` "dlib mp-box"; the fit uses dlib's calibration). The points differ a
#: little from HOG's box's: BENCHMARKS.md "detect" has the landmark error of both. Photos where
#: it finds nothing go on to the default chain; it is skipped for ``all_faces``.
FAST_CHAIN = (
    DetectorConfig(backend="dlib", detector="mp-box", first_pass=True),
    *DEFAULT_CHAIN,
)


#: the detector of single photos and image sets when none is named (``--detector``): the fast
#: chain. Against :data:`DEFAULT_CHAIN` first (``"auto"``) its shapes were as close or closer
#: to the truth, paired with the average face on the same renders (2026-12-08; posed ``auto`` /
#: fit): held-out bfm-lite renders 0.906x / 0.983x against 0.917x / 1.013x; realistic renders,
#: bfm-lite 0.821x / 0.774x against 0.836x / 0.774x, ICT 0.975x / 0.970x against 0.972x /
#: 0.969x; the same faces found. Its points on ``faces_68pt`` are closer to the hand-placed
#: ones (4.81 against 4.92 % IOD), and it detects in ~3 ms where HOG takes ~0.55 s a photo.
DEFAULT_DETECTOR = "fast"
#: the detector of ``--views`` and video when none is named: the chain as those were measured
VIEWS_DETECTOR = "auto"


def detector_for(name: str, second_opinion: bool = True) -> FaceDetector:
    """The CLI's ``--detector NAME``: ``"auto"`` (:class:`FallbackDetector`), ``"fast"`` (the
    same after a cheap first pass, :data:`FAST_CHAIN`), ``"dlib"`` (HOG), ``"mmod"`` (dlib's
    CNN) or ``"mediapipe"``.

    ``second_opinion``: the chains also run MediaPipe on every face for ``Face.alt_lm68``
    (used by the fits only; methods that ignore it skip the cost with False).
    """
    if name in ("auto", "fast"):
        other = DetectorConfig(backend="mediapipe") if second_opinion else None
        chain = FAST_CHAIN if name == "fast" else DEFAULT_CHAIN
        return FallbackDetector(chain, second_opinion=other)
    if name == "mmod":
        return make_detector(DetectorConfig(backend="dlib", detector="mmod"))
    return make_detector(DetectorConfig(backend=name))


def preload(name: str) -> None:
    """Load what :func:`detector_for` ``(name)`` needs for a first photo: the libraries and
    dlib's model files (loaded once per process, :func:`facerecon.detect.dlib_backend.
    load_dlib_model`); MediaPipe's graphs still load on the first photo (~0.05 s). A process
    preparing photos calls it while its parent loads torch (``facerecon reconstruct``)."""
    if name in ("fast", "mediapipe"):
        from .mediapipe_backend import import_mediapipe

        import_mediapipe()  # ~0.3 s
    if name != "mediapipe":
        from .dlib_backend import preload_dlib

        preload_dlib({"fast": "mp-box", "mmod": "mmod"}.get(name, "hog"))


#: ``--detector`` choices
DETECTOR_CHOICES = ("auto", "fast", "dlib", "mmod", "mediapipe")


@functools.lru_cache(maxsize=8)
def get_detector(
    backend: str = "dlib", detector: str = "hog", model_dir: str | None = None
) -> FaceDetector:
    """Cached default :class:`FaceDetector` for ``(backend, detector, model_dir)``."""
    return make_detector(DetectorConfig(backend=backend, detector=detector, model_dir=model_dir))


def detect(
    image: np.ndarray,
    backend: str = "dlib",
    detector: str = "hog",
    all_faces: bool = False,
    *,
    model_dir: str | None = None,
    detector_obj: FaceDetector | None = None,
) -> list[Face]:
    """Detect faces and their 68 landmarks.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (gray, RGBA, uint16 and float arrays are coerced).
        backend: ``"dlib"`` or ``"mediapipe"``.
        detector: dlib detector ``"hog"`` (default) or ``"mmod"``.
        all_faces: return every face instead of only the largest.
        model_dir: folder of the dlib ``.dat`` files (default: face_recognition_models).
        detector_obj: a :class:`FaceDetector` you hold (its config wins over the arguments above).

    Returns:
        ``list[Face]`` sorted largest first (possibly empty).
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy image array, got {type(image).__name__}")
    det = detector_obj if detector_obj is not None else get_detector(backend, detector, model_dir)
    return det.detect(image, all_faces=all_faces)


def detect_one(
    image: np.ndarray,
    backend: str = "dlib",
    detector: str = "hog",
    *,
    model_dir: str | None = None,
    detector_obj: FaceDetector | None = None,
    name: str | None = None,
) -> Face:
    """The largest face; raises :class:`NoFaceError` when there is none.

    Args:
        name: what to call the image in the error message (e.g. its file name).
    """
    det = detector_obj if detector_obj is not None else get_detector(backend, detector, model_dir)
    faces = detect(image, all_faces=False, detector_obj=det)
    if not faces:
        what = f" in {name}" if name else ""
        h, w = np.asarray(image).shape[:2]
        raise NoFaceError(f"no face found{what} ({w}x{h} px, detector: {det.name})")
    return faces[0]

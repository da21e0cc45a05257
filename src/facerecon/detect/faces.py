"""Face detection and 68-point iBUG landmarks.

Backends:

* ``"dlib"`` (default): dlib's HOG frontal detector (``detector="hog"``, default) or its MMOD CNN
  detector (``detector="mmod"``, ``mmod_human_face_detector.dat``), then
  ``shape_predictor_68_face_landmarks.dat``. Model files come from the ``face_recognition_models``
  package unless ``model_dir`` says otherwise. The shape predictor was trained on HOG boxes, whose
  centre is the centroid of the inner landmarks (brows, eyes, nose, mouth: measured within 0.07
  box widths, mean offset < 0.01, on the 8 HOG faces of the 300-W samples and astronaut.jpg).
  MMOD boxes are centred on the head instead, which for a turned face lies well off the inner
  features (breakingbad.jpg's 3/4 face: 0.19 widths), and the predictor then fails (NME 27%).
  So MMOD boxes are first re-centred on the predicted inner landmarks until the box stops moving
  (:func:`mmod_landmarks`); see ``DetectorConfig.mmod_passes``.
* ``"mediapipe"``: MediaPipe Face Mesh (478 points with depth); ``Face.landmarks3d`` holds them in
  pixels and ``Face.landmarks68`` is derived through the committed 478 -> 68 table
  (:mod:`facerecon.detect.mp68`).

Coordinates follow OpenCV: pixel (row r, col c) has its centre at ``(x=c, y=r)``.
``Face.box`` is ``(x0, y0, x1, y1)`` with ``x1 - x0`` the box width (x1, y1 exclusive).

Loaded models live in a :class:`Detector` the caller holds; :func:`get_detector` is an
``lru_cache``'d factory for convenience and :func:`detect` uses it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facerecon.errors import ImageError, ModelFileError, NoFaceError

from .image_io import to_rgb_uint8

__all__ = [
    "Detector",
    "DetectorConfig",
    "Face",
    "default_model_dir",
    "detect",
    "detect_one",
    "get_detector",
    "inner_centre",
    "mmod_landmarks",
    "recentre_box",
]


@dataclass
class Face:
    """One detected face, in the pixel coordinates of the image passed to :func:`detect`.

    Attributes:
        box: ``(4,)`` float ``x0, y0, x1, y1`` (x1, y1 exclusive, so ``x1 - x0`` is the width).
        landmarks68: ``(68, 2)`` float iBUG-68 points ``(x, y)`` in pixels (0-based, OpenCV).
        score: detector confidence (HOG: SVM margin; MMOD: CNN confidence; MediaPipe:
            face-detection score, or 1.0 when the mesh was run without a detector).
        landmarks3d: ``(478, 3)`` MediaPipe mesh in pixels (z scaled like x, more negative =
            closer to the camera), or None for dlib.
    """

    box: np.ndarray
    landmarks68: np.ndarray
    score: float
    landmarks3d: np.ndarray | None = None

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
    """Settings of a :class:`Detector`.

    Attributes:
        backend: ``"dlib"`` or ``"mediapipe"``.
        detector: dlib face detector, ``"hog"`` or ``"mmod"`` (ignored by mediapipe).
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


def default_model_dir() -> Path:
    """Folder of the dlib model files shipped by the ``face_recognition_models`` package."""
    try:
        import face_recognition_models
    except ImportError as e:  # pragma: no cover - dependency of the project
        raise ModelFileError(
            "package face_recognition_models is not installed (needed for dlib model files)"
        ) from e
    return Path(os.path.dirname(face_recognition_models.__file__)) / "models"


def _model_file(model_dir: str | None, name: str) -> str:
    folder = Path(model_dir) if model_dir is not None else default_model_dir()
    path = folder / name
    if not path.is_file():
        raise ModelFileError(f"dlib model file not found: {path}")
    return str(path)


def _resize_for_detection(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float, float]:
    """Downscale so the longer side is <= max_side. Returns (copy, fx, fy) with fx = W'/W."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image, 1.0, 1.0
    f = max_side / max(h, w)
    nw, nh = max(1, round(w * f)), max(1, round(h * f))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return small, nw / w, nh / h


def _unscale_points(pts: np.ndarray, fx: float, fy: float) -> np.ndarray:
    """Map ``(..., 2)`` pixel-centre coordinates of a resized copy back to the original."""
    if fx == 1.0 and fy == 1.0:
        return pts
    out = np.asarray(pts, dtype=np.float64).copy()
    out[..., 0] = (out[..., 0] + 0.5) / fx - 0.5
    out[..., 1] = (out[..., 1] + 0.5) / fy - 0.5
    return out


def _unscale_box(box: np.ndarray, fx: float, fy: float) -> np.ndarray:
    """Box edges (x0, y0, x1, y1) of a resized copy -> original (edges scale without offset)."""
    return np.asarray(box, dtype=np.float64) / np.array([fx, fy, fx, fy])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _nms(boxes: list[np.ndarray], scores: list[float], thresh: float = 0.3) -> list[int]:
    """Indices kept by greedy non-maximum suppression (highest score first)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    for i in order:
        if all(_iou(boxes[i], boxes[j]) <= thresh for j in keep):
            keep.append(int(i))
    return keep


def inner_centre(landmarks68: np.ndarray) -> np.ndarray:
    """Centroid ``(2,)`` of the inner iBUG landmarks (17..67: brows, nose, eyes, mouth)."""
    return np.asarray(landmarks68, dtype=np.float64)[17:].mean(axis=0)


def recentre_box(box: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Box ``(4,)`` x0, y0, x1, y1 moved (same size) so its centre is ``centre`` ``(2,)``."""
    box = np.asarray(box, dtype=np.float64)
    half = 0.5 * (box[2:] - box[:2])
    return np.concatenate([centre - half, centre + half])


#: Re-centring stops once the box centre moves less than this fraction of the box width.
MMOD_TOL = 0.02


def mmod_landmarks(
    predict: Callable[[np.ndarray], np.ndarray],
    box: np.ndarray,
    max_passes: int = 5,
    tol: float = MMOD_TOL,
) -> tuple[np.ndarray, np.ndarray]:
    """68 landmarks for an MMOD box, with the box made HOG-like first.

    Runs ``predict`` (box -> ``(68, 2)``) on ``box``, re-centres the box on the result's
    :func:`inner_centre` and repeats until the centre moves less than ``tol`` box widths or
    ``max_passes`` predictions were made (``max_passes=1`` is plain ``predict(box)``). The box
    keeps the detector's size: MMOD and HOG boxes of the same face differ by 0.9-1.1x in width.
    Measured NME (raw box -> re-centred) on the 300-W samples: einstein 9.9% -> 5.5%,
    breakingbad 27.3% -> 5.6%, takeo 3.7% -> 3.7%.

    Returns:
        ``(landmarks68 (68, 2), box (4,))``, the box the landmarks were predicted in.
    """
    box = np.asarray(box, dtype=np.float64)
    lm = predict(box)
    for _ in range(max_passes - 1):
        centre = inner_centre(lm)
        moved = np.linalg.norm(centre - 0.5 * (box[:2] + box[2:])) / (box[2] - box[0])
        if moved < tol:
            break
        box = recentre_box(box, centre)
        lm = predict(box)
    return lm, box


def _rank(box: np.ndarray, score: float) -> float:
    """Ordering key: box area weighted by ``exp(score)`` (score clipped to [-2, 3]).

    Plain "largest first" lets a weak HOG false positive (score ~0.1) outrank a real face of
    about the same size (score ~1.6) in astronaut.jpg; the weight breaks such near-ties by
    confidence while a face clearly larger than another still comes first.
    """
    area = max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)
    return float(area * np.exp(np.clip(score, -2.0, 3.0)))


def _sort_largest_first(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: -_rank(f.box, f.score))


@dataclass
class Detector:
    """Holds loaded detector models; call :meth:`detect`. Not thread-safe (mediapipe graphs).

    Example:
        >>> det = Detector(DetectorConfig(backend="dlib", detector="hog"))
        >>> faces = det.detect(image)            # largest face only
        >>> faces = det.detect(image, all_faces=True)
    """

    config: DetectorConfig = field(default_factory=DetectorConfig)
    _models: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        c = self.config
        if c.backend not in ("dlib", "mediapipe"):
            raise ValueError(f"unknown backend {c.backend!r}; use 'dlib' or 'mediapipe'")
        if c.backend == "dlib" and c.detector not in ("hog", "mmod"):
            raise ValueError(f"unknown dlib detector {c.detector!r}; use 'hog' or 'mmod'")

    # ----------------------------------------------------------------- dlib
    def _dlib(self, key: str) -> Any:
        if key not in self._models:
            import dlib

            c = self.config
            if key == "hog":
                self._models[key] = dlib.get_frontal_face_detector()
            elif key == "mmod":
                path = _model_file(c.model_dir, "mmod_human_face_detector.dat")
                self._models[key] = dlib.cnn_face_detection_model_v1(path)
            elif key == "sp68":
                path = _model_file(c.model_dir, "shape_predictor_68_face_landmarks.dat")
                self._models[key] = dlib.shape_predictor(path)
        return self._models[key]

    def dlib_boxes(self, image: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
        """Run the dlib face detector only. Returns boxes ``(4,)`` (original pixels) and scores."""
        c = self.config
        max_side = c.max_side or (2048 if c.detector == "hog" else 1024)
        small, fx, fy = _resize_for_detection(image, max_side)
        boxes: list[np.ndarray] = []
        scores: list[float] = []
        if c.detector == "hog":
            hog = self._dlib("hog")
            if c.upsample is not None:
                levels = [c.upsample]
            else:
                levels = [0, 1] if max(small.shape[:2]) <= c.upsample_below else [0]
            for up in levels:
                rects, confs, _ = hog.run(small, up, c.min_score)
                for r, s in zip(rects, confs, strict=True):
                    boxes.append(_rect_box(r))
                    scores.append(float(s))
        else:
            mmod = self._dlib("mmod")
            dets = mmod(small, c.upsample if c.upsample is not None else 0)
            for d in dets:
                r = d.rect
                if d.confidence < c.min_score:
                    continue
                boxes.append(_rect_box(r))
                scores.append(float(d.confidence))
        keep = _nms(boxes, scores)
        return [_unscale_box(boxes[i], fx, fy) for i in keep], [scores[i] for i in keep]

    def dlib_landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """68 landmarks ``(68, 2)`` inside ``box`` (x0, y0, x1, y1) on the full-res image."""
        import dlib

        sp = self._dlib("sp68")
        x0, y0, x1, y1 = (round(float(v)) for v in box)
        shape = sp(image, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def face_landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """68 landmarks ``(68, 2)`` for a box of the configured detector.

        HOG boxes go straight to the shape predictor; MMOD boxes through :func:`mmod_landmarks`
        (``config.mmod_passes``). ``Face.box`` stays the detector's box either way.
        """
        if self.config.detector == "hog":
            return self.dlib_landmarks(image, box)

        def predict(b: np.ndarray) -> np.ndarray:
            return self.dlib_landmarks(image, b)

        return mmod_landmarks(predict, box, max_passes=self.config.mmod_passes)[0]

    def _detect_dlib(self, image: np.ndarray, all_faces: bool) -> list[Face]:
        boxes, scores = self.dlib_boxes(image)
        order = sorted(range(len(boxes)), key=lambda i: -_rank(boxes[i], scores[i]))
        if not all_faces:
            order = order[:1]
        faces = [
            Face(box=boxes[i], landmarks68=self.face_landmarks(image, boxes[i]), score=scores[i])
            for i in order
        ]
        return _sort_largest_first(faces)

    # ------------------------------------------------------------ mediapipe
    def _detect_mediapipe(self, image: np.ndarray, all_faces: bool) -> list[Face]:
        from .mediapipe_backend import detect_mediapipe

        return detect_mediapipe(self, image, all_faces)

    # --------------------------------------------------------------- public
    def detect(self, image: np.ndarray, all_faces: bool = False) -> list[Face]:
        """Detect faces in ``(H, W, 3)`` uint8 RGB (other layouts are coerced).

        Returns:
            Faces sorted largest first (area weighted by ``exp(score)``, see ``_rank``); only
            the first unless ``all_faces``. Empty if none.
        """
        image = to_rgb_uint8(image)
        if self.config.backend == "dlib":
            return self._detect_dlib(image, all_faces)
        return self._detect_mediapipe(image, all_faces)

    def close(self) -> None:
        """Release loaded models (mediapipe graphs hold native resources)."""
        for m in self._models.values():
            if hasattr(m, "close"):
                m.close()
        self._models.clear()


def _rect_box(r: Any) -> np.ndarray:
    """dlib rectangle (inclusive corners) -> ``(4,)`` x0, y0, x1, y1 with x1, y1 exclusive."""
    return np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], dtype=np.float64)


@functools.lru_cache(maxsize=8)
def get_detector(
    backend: str = "dlib", detector: str = "hog", model_dir: str | None = None
) -> Detector:
    """Cached default :class:`Detector` for ``(backend, detector, model_dir)``."""
    return Detector(DetectorConfig(backend=backend, detector=detector, model_dir=model_dir))


def detect(
    image: np.ndarray,
    backend: str = "dlib",
    detector: str = "hog",
    all_faces: bool = False,
    *,
    model_dir: str | None = None,
    detector_obj: Detector | None = None,
) -> list[Face]:
    """Detect faces and their 68 landmarks.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (gray, RGBA, uint16 and float arrays are coerced).
        backend: ``"dlib"`` or ``"mediapipe"``.
        detector: dlib detector ``"hog"`` (default) or ``"mmod"``.
        all_faces: return every face instead of only the largest.
        model_dir: folder of the dlib ``.dat`` files (default: face_recognition_models).
        detector_obj: a :class:`Detector` you hold (its config wins over the arguments above).

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
    detector_obj: Detector | None = None,
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
        c = det.config
        how = c.backend if c.backend == "mediapipe" else f"dlib {c.detector}"
        raise NoFaceError(f"no face found{what} ({w}x{h} px, detector: {how})")
    return faces[0]

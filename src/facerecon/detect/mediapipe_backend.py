"""MediaPipe backend: full-range face detection, then Face Mesh (478 points) on each face crop.

Face Mesh alone only finds faces that fill a good part of the frame (it misses einstein.jpg's
~85 px face in a 817 x 1024 photo), so each face found by MediaPipe's full-range face detector is
cut out as a square of ``crop_factor`` times the box size, resampled to ``crop_px`` and meshed
there; points are mapped back to the photo. When the detector finds nothing the mesh is run on
the whole (downscaled) image as a fallback.

Coordinates: MediaPipe's normalised ``x, y`` span the image edges, so a pixel-centre coordinate
is ``x * W - 0.5``; ``z`` is scaled like ``x`` (``z * W``), more negative = closer to the camera.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import types
import weakref
from typing import Any, ClassVar

import cv2
import numpy as np

from .boxes import (
    level_tiles,
    nms,
    rank,
    resize_for_detection,
    sort_largest_first,
    tile_levels,
    unscale_box,
)
from .faces import DetectorConfig, Face, FaceDetector
from .mp68 import mesh_to_68

CROP_FACTOR = 2.0
CROP_PX = 384
#: the full-range face detector's input side: each tile is downscaled to it here, with area
#: averaging, rather than by MediaPipe's own resampling, whose aliasing loses small faces (a
#: 1080 px tile of a 1080p photo found 6 of 8 faces of 50-125 px with it, 1 of 8 without);
#: the whole-photo pass keeps MediaPipe's resampling (:meth:`MediapipeDetector._boxes_in`)
DETECT_PX = 192

__all__ = ["MediapipeDetector", "QuietGraph", "import_mediapipe", "mesh_in_crop"]


class _Deferred(types.ModuleType):
    """Stands in for module ``name`` while :func:`import_mediapipe` runs; afterwards the first
    attribute asked of it imports the real module and answers from it."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or sys.modules.get(self.__name__) is self:
            raise AttributeError(attr)  # still standing in: nothing real to answer from yet
        return getattr(importlib.import_module(self.__name__), attr)


@contextlib.contextmanager
def _deferring(names: tuple[str, ...]):
    """``sys.modules[name]`` is a :class:`_Deferred` for each of ``names`` (all not yet
    imported) inside the block, and is removed again after it."""
    if any(n in sys.modules for n in names):
        yield
        return
    stand_ins = {n: _Deferred(n) for n in names}
    sys.modules.update(stand_ins)
    try:
        yield
    finally:
        for n, m in stand_ins.items():
            if sys.modules.get(n) is m:
                del sys.modules[n]


@contextlib.contextmanager
def _native_stderr_off():
    """The process's stderr (file descriptor 2) goes to the null device inside the block.
    Process-wide: another thread's stderr output in the meantime is lost too."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class QuietGraph:
    """A MediaPipe solution graph (``make()``: e.g. ``FaceMesh(...)``) whose start-up log
    lines stay off the terminal. Its native code writes them straight to stderr: TFLite's
    "Created TensorFlow Lite XNNPACK delegate", absl warnings when the graph is built
    ("Feedback manager requires a model with a single signature") and on its first face
    ("Using NORM_RECT without IMAGE_DIMENSIONS"), noise that would precede every CLI message
    and break its one-line errors. So stderr is off (:func:`_native_stderr_off`) while the
    graph is built and while it processes images until its first result with a face, after
    which those lines are not written again. ``process`` and ``close`` are the graph's."""

    def __init__(self, make):
        with _native_stderr_off():
            self._graph = make()
        self._settled = False

    def process(self, image: np.ndarray) -> Any:
        if self._settled:
            return self._graph.process(image)
        with _native_stderr_off():
            res = self._graph.process(image)
        self._settled = bool(
            getattr(res, "detections", None) or getattr(res, "multi_face_landmarks", None)
        )
        return res

    def close(self) -> None:
        self._graph.close()


def import_mediapipe() -> types.ModuleType:
    """``import mediapipe``, without loading matplotlib on the way.

    MediaPipe's package imports its drawing helpers, and they import ``matplotlib.pyplot``:
    0.3 s of the 0.6 s ``import mediapipe`` takes on this 2-core machine, for a plotting
    function nothing here calls. While MediaPipe loads, ``matplotlib`` and ``matplotlib.pyplot``
    are stand-ins (when neither is imported yet); the one its drawing module keeps imports the
    real ``matplotlib.pyplot`` the first time it is used, so ``mp.solutions.drawing_utils.
    plot_landmarks`` still works."""
    if "mediapipe" in sys.modules:
        return sys.modules["mediapipe"]
    with _deferring(("matplotlib", "matplotlib.pyplot")):
        return importlib.import_module("mediapipe")


def _landmarks_px(lms: object, w: int, h: int) -> np.ndarray:
    """MediaPipe NormalizedLandmarkList -> ``(478, 3)`` pixel-centre coordinates."""
    a = np.array([[p.x, p.y, p.z] for p in lms.landmark], dtype=np.float64)
    return np.stack([a[:, 0] * w - 0.5, a[:, 1] * h - 0.5, a[:, 2] * w], axis=-1)


def mesh_in_crop(
    mesh: object,
    image: np.ndarray,
    box: np.ndarray,
    crop_factor: float = CROP_FACTOR,
    crop_px: int = CROP_PX,
) -> np.ndarray | None:
    """Run Face Mesh on a square crop around ``box``; ``(478, 3)`` in image pixels or None."""
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    side = crop_factor * max(box[2] - box[0], box[3] - box[1])
    f = crop_px / side
    # crop pixel q = f * (p - origin); origin is the photo point at crop pixel (0, 0) centre.
    ox = cx - (crop_px / 2.0 - 0.5) / f
    oy = cy - (crop_px / 2.0 - 0.5) / f
    M = np.array([[f, 0.0, -f * ox], [0.0, f, -f * oy]])
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    crop = cv2.warpAffine(image, M, (crop_px, crop_px), flags=interp, borderValue=(0, 0, 0))
    res = mesh.process(crop)
    if not res.multi_face_landmarks:
        return None
    pts = _landmarks_px(res.multi_face_landmarks[0], crop_px, crop_px)
    return np.stack([pts[:, 0] / f + ox, pts[:, 1] / f + oy, pts[:, 2] / f], axis=-1)


class MediapipeDetector(FaceDetector):
    """MediaPipe face detection + Face Mesh (module docstring); graphs load on first use."""

    backend: ClassVar[str] = "mediapipe"

    def __init__(self, config: DetectorConfig | None = None):
        super().__init__(config)
        # the last photo's boxes and verifying meshes (see _remember)
        self._last: tuple[Any, tuple, list, list, dict[int, np.ndarray]] | None = None

    def _remember(self, image, boxes, scores, meshes: dict[int, np.ndarray]) -> None:
        """Keep one photo's boxes, scores and the meshes that verified tiled boxes: a second
        look at the same photo (``--detector fast`` takes dlib's box from here, then asks this
        detector for its second opinion) then costs nothing, where a tiled search of a 1080p
        photo costs up to ~0.2 s. The photo is matched by identity, shape and a sparse pixel
        sample, so a new or changed array is searched again."""
        self._last = (weakref.ref(image), _photo_key(image), boxes, scores, meshes)

    def _remembered(self, image) -> tuple[list, list, dict[int, np.ndarray]] | None:
        last = self._last
        if last is None or last[0]() is not image or last[1] != _photo_key(image):
            return None
        return list(last[2]), list(last[3]), last[4]

    def face_detection(self) -> Any:
        """MediaPipe's full-range face detector graph."""
        mp = import_mediapipe()

        m = self._models
        if "mp_detect" not in m:
            m["mp_detect"] = QuietGraph(
                lambda: mp.solutions.face_detection.FaceDetection(
                    model_selection=1, min_detection_confidence=0.5
                )
            )
        return m["mp_detect"]

    def face_boxes(
        self, image: np.ndarray, every_level: bool = False
    ) -> tuple[list[np.ndarray], list[float]]:
        """MediaPipe's face boxes ``(4,)`` (photo pixels) and scores, NMS applied, best
        ranked first (:func:`facerecon.detect.boxes.rank`); no landmarks (~6 ms a photo).

        The detector sees the image at 192 px, so faces under ~10 % of its side are missed:
        when the whole image gives none, overlapping tiles are searched level by level from
        the coarsest (:func:`facerecon.detect.boxes.tile_levels` down to 512 px), stopping
        after the first level with a face unless ``every_level`` (all faces, small ones too).
        The tiles' many small looks find false faces in smooth backgrounds too, so a box
        found there is kept only where Face Mesh also finds a face in it. On the throughput
        benchmark's 1080p photos with 50-125 px faces this took 3-13 detector passes where
        searching every tile took 34 (~30 against ~200 ms). The last photo's result is
        remembered (:meth:`_remember`) and serves a second look at it whatever ``every_level``.
        """
        boxes, scores, _ = self._search(image, every_level)
        return boxes, scores

    def _search(
        self, image: np.ndarray, every_level: bool = False
    ) -> tuple[list, list, dict[int, np.ndarray]]:
        """:meth:`face_boxes` and the meshes that verified its tiled boxes (by position)."""
        hit = self._remembered(image)
        if hit is not None:
            return hit
        boxes, scores = self._boxes_in(image, self.config.max_side or 1920)
        verified: dict[int, np.ndarray] = {}
        if not boxes:
            tried: set[int] = set()
            mesh = self.models()[1]
            for level in tile_levels(*image.shape[:2], base=512):
                for tile, (ox, oy, fx, fy) in level_tiles(image, level, DETECT_PX):
                    b, sc = self._boxes_in(tile, DETECT_PX)
                    boxes += [unscale_box(box, fx, fy) + np.array([ox, oy, ox, oy]) for box in b]
                    scores += sc
                for i in nms(boxes, scores):
                    if i not in tried:
                        tried.add(i)
                        pts = mesh_in_crop(mesh, image, boxes[i])
                        if pts is not None:
                            verified[i] = pts
                if verified and not every_level:
                    break
            keep = [i for i in nms(boxes, scores) if i in verified]
        else:
            keep = nms(boxes, scores)
        keep = sorted(keep, key=lambda i: -rank(boxes[i], scores[i]))
        out = [boxes[i] for i in keep], [scores[i] for i in keep]
        meshes = {k: verified[i] for k, i in enumerate(keep) if i in verified}
        self._remember(image, *out, meshes)
        return out[0], out[1], meshes

    def _boxes_in(self, image: np.ndarray, max_side: int) -> tuple[list[np.ndarray], list[float]]:
        """Boxes and scores of one detector pass over ``image`` (no NMS), downscaled to at
        most ``max_side`` pixels a side with area averaging (tiles: :data:`DETECT_PX`; the
        whole photo keeps the former 1920, MediaPipe resampling the rest: its boxes place
        dlib's points for ``--detector fast``, whose error on faces_68pt is measured so)."""
        small, fx, fy = resize_for_detection(image, max_side)
        res = self.face_detection().process(np.ascontiguousarray(small))
        sh, sw = small.shape[:2]
        boxes, scores = [], []
        for d in res.detections or []:
            rb = d.location_data.relative_bounding_box
            b = np.array(
                [rb.xmin * sw, rb.ymin * sh, (rb.xmin + rb.width) * sw, (rb.ymin + rb.height) * sh]
            )
            boxes.append(unscale_box(b, fx, fy))
            scores.append(float(d.score[0]))
        return boxes, scores

    def models(self) -> tuple[Any, Any]:
        """``(face detector, single-face mesh)`` MediaPipe graphs."""
        mp = import_mediapipe()

        m = self._models
        self.face_detection()
        if "mp_mesh1" not in m:
            m["mp_mesh1"] = QuietGraph(
                lambda: mp.solutions.face_mesh.FaceMesh(
                    static_image_mode=True, refine_landmarks=True, max_num_faces=1
                )
            )
        return m["mp_detect"], m["mp_mesh1"]

    def _mesh_many(self) -> Any:
        mp = import_mediapipe()

        if "mp_meshN" not in self._models:
            self._models["mp_meshN"] = QuietGraph(
                lambda: mp.solutions.face_mesh.FaceMesh(
                    static_image_mode=True,
                    refine_landmarks=True,
                    max_num_faces=self.config.max_faces,
                )
            )
        return self._models["mp_meshN"]

    def _detect(self, image: np.ndarray, all_faces: bool) -> list[Face]:
        _, mesh1 = self.models()
        with self.seconds.timed("detect"):
            boxes, scores, meshes = self._search(image, every_level=all_faces)
        faces: list[Face] = []
        with self.seconds.timed("landmarks"):
            for k, (box, score) in enumerate(zip(boxes, scores, strict=True)):
                if not all_faces and faces:
                    break
                pts = meshes[k] if k in meshes else mesh_in_crop(mesh1, image, box)
                if pts is None or score < self.config.min_score:
                    continue
                faces.append(Face(box=box, lm68=mesh_to_68(pts[:, :2]), score=score, mp478=pts))
            if not faces and not boxes:
                small, fx, fy = resize_for_detection(image, self.config.max_side or 1920)
                sh, sw = small.shape[:2]
                meshN = self._mesh_many()
                r = meshN.process(small)
                for lms in r.multi_face_landmarks or []:
                    pts = _landmarks_px(lms, sw, sh)
                    pts[:, 0] = (pts[:, 0] + 0.5) / fx - 0.5
                    pts[:, 1] = (pts[:, 1] + 0.5) / fy - 0.5
                    pts[:, 2] = pts[:, 2] / fx
                    box = np.concatenate([pts[:, :2].min(0), pts[:, :2].max(0) + 1.0])
                    faces.append(Face(box=box, lm68=mesh_to_68(pts[:, :2]), score=1.0, mp478=pts))
        faces = sort_largest_first(faces)
        return faces if all_faces else faces[:1]


def _photo_key(image: np.ndarray) -> tuple:
    """A photo's shape and a hash of a sparse sample of its pixels (tells a changed photo)."""
    return image.shape, hash(np.ascontiguousarray(image[::61, ::67]).tobytes())

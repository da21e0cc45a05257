"""Peer methods measured with our accuracy protocol: MediaPipe Face Mesh.

MediaPipe Face Mesh (``static_image_mode=True, refine_landmarks=False``) predicts 468 points
per face in image pixels with a relative depth (``z`` scaled like ``x``, more negative =
closer to the camera). Its scale is arbitrary for our purpose (pixels, not mm): the
evaluation's ICP with isotropic scale absorbs it, exactly as it absorbs the scale of our own
reconstructions.

Mesh: the triangles are recovered from the tessellation *edges* MediaPipe publishes
(``FACEMESH_TESSELATION``): every 3-clique of the edge graph is a candidate; a clique whose
three edges all lie in more than two cliques encloses other triangles (a separating triangle,
not a face) and is dropped. What remains are the 852 faces of the canonical face mesh
(468 - 1322 + 852 = -2: a disc with two eye holes and the mouth hole); they are then oriented
consistently (shared edges traversed in opposite directions), which the evaluation's
area-weighted normals need.

Coordinates handed to the evaluation: ``(x, -y, -z)`` of the pixel coordinates, i.e. a
proper rotation (180 degrees about x) into the model-space convention (+y up, +z towards
the camera); no reflection, so ICP can align it with a rotation.

Landmark initialisation: 5 points from MediaPipe vertices with a clear iBUG counterpart, in
the paper's 5-point order: the subject's right eye centre (mean of corners 33 and 133), left
eye centre (362, 263), nose tip (1), right and left mouth corners (61, 291).
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

N_MESH_POINTS = 468
N_MESH_TRIANGLES = 852
# (vertex indices averaged) per 5-point landmark: eye R, eye L, nose tip, mouth R, mouth L
MEDIAPIPE_FIVE = ((33, 133), (362, 263), (1,), (61,), (291,))

__all__ = [
    "MEDIAPIPE_FIVE",
    "MediapipeConfig",
    "MediapipeFaceMesh",
    "PeerMesh",
    "mediapipe_five_points",
    "mediapipe_triangles",
    "orient_consistently",
    "outward",
    "pixels_to_model_axes",
    "triangles_from_edges",
]


@dataclass
class PeerMesh:
    """A peer's predicted mesh: ``vertices (N, 3)`` (arbitrary scale), ``triangles (F, 3)``,
    ``landmarks (5, 3)`` positions in the paper's 5-point order."""

    vertices: np.ndarray
    triangles: np.ndarray
    landmarks: np.ndarray


def triangles_from_edges(edges: Iterable[tuple[int, int]]) -> np.ndarray:
    """Faces ``(F, 3)`` (sorted vertex ids, unoriented) of a triangulated surface given its edges.

    All 3-cliques of the edge graph, minus separating triangles (cliques whose three edges
    each belong to more than two cliques: on a manifold surface an edge bounds at most two
    faces, so such a clique is not a face but a loop around other faces).
    """
    unique = {tuple(sorted((int(a), int(b)))) for a, b in edges if a != b}
    adj: dict[int, set[int]] = {}
    for a, b in unique:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    cliques = set()
    for a, b in unique:
        for c in adj[a] & adj[b]:
            cliques.add(tuple(sorted((a, b, c))))
    uses = Counter(e for t in cliques for e in itertools.combinations(t, 2))
    faces = [t for t in cliques if not all(uses[e] > 2 for e in itertools.combinations(t, 2))]
    return np.array(sorted(faces), dtype=np.int64).reshape(-1, 3)


def orient_consistently(triangles: np.ndarray) -> np.ndarray:
    """Reorder each face of ``triangles (F, 3)`` so that neighbours traverse their shared edge
    in opposite directions (breadth-first over each connected component; the first face of a
    component keeps its order). Returns a new ``(F, 3)`` int64 array."""
    tri = np.asarray(triangles, dtype=np.int64).copy()
    by_edge: dict[tuple[int, int], list[int]] = {}
    for f, t in enumerate(tri):
        for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            by_edge.setdefault((min(a, b), max(a, b)), []).append(f)
    done = np.zeros(len(tri), bool)
    for start in range(len(tri)):
        if done[start]:
            continue
        done[start] = True
        queue = deque([start])
        while queue:
            f = queue.popleft()
            t = tri[f]
            for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
                for g in by_edge[(min(a, b), max(a, b))]:
                    if done[g]:
                        continue
                    u = tri[g]
                    directed = {(u[0], u[1]), (u[1], u[2]), (u[2], u[0])}
                    if (a, b) in directed:  # same direction as f: flip g
                        tri[g] = u[[0, 2, 1]]
                    done[g] = True
                    queue.append(g)
    return tri


@functools.lru_cache(maxsize=1)
def _tessellation() -> np.ndarray:
    from facerecon.detect.mediapipe_backend import import_mediapipe

    import_mediapipe()  # first, so that matplotlib is not loaded on the way
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    tri = orient_consistently(triangles_from_edges(FACEMESH_TESSELATION))
    tri.setflags(write=False)
    return tri


def mediapipe_triangles() -> np.ndarray:
    """The Face Mesh triangles ``(852, 3)`` int64, consistently oriented (module docstring)."""
    return _tessellation().copy()


def pixels_to_model_axes(points: np.ndarray) -> np.ndarray:
    """``(..., 3)`` pixel coordinates (x right, y down, z away from the camera) -> ``(x, -y, -z)``
    (y up, z towards the camera): a rotation by 180 degrees about x."""
    p = np.asarray(points, dtype=np.float64)
    return p * np.array([1.0, -1.0, -1.0])


def outward(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """``triangles (F, 3)`` (consistently oriented) in the order whose summed face normal points
    towards +z (out of the face, towards the camera); reversed if it points away."""
    v = np.asarray(vertices, dtype=np.float64)[triangles]
    normal = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]).sum(axis=0)
    return triangles if normal[2] >= 0 else triangles[:, ::-1].copy()


def mediapipe_five_points(vertices: np.ndarray) -> np.ndarray:
    """``(468, 3) -> (5, 3)``: eye centres, nose tip, mouth corners (:data:`MEDIAPIPE_FIVE`)."""
    v = np.asarray(vertices, dtype=np.float64)
    return np.stack([v[list(group)].mean(axis=0) for group in MEDIAPIPE_FIVE])


@dataclass
class MediapipeConfig:
    """Face Mesh settings (the peer as users run it on single photos)."""

    static_image_mode: bool = True
    refine_landmarks: bool = False
    min_detection_confidence: float = 0.5


class MediapipeFaceMesh:
    """Callable peer: ``image (H, W, 3) uint8 RGB -> PeerMesh`` or None when no face is found.

    Holds one MediaPipe graph; call :meth:`close` (or use as a context manager) to free it.
    Vertices are in pixel units in the model-space axes (:func:`pixels_to_model_axes`).
    """

    def __init__(self, config: MediapipeConfig | None = None):
        from facerecon.detect.mediapipe_backend import import_mediapipe

        mp = import_mediapipe()

        self.config = config or MediapipeConfig()
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=self.config.static_image_mode,
            refine_landmarks=self.config.refine_landmarks,
            max_num_faces=1,
            min_detection_confidence=self.config.min_detection_confidence,
        )
        self.triangles = mediapipe_triangles()

    def __call__(self, image: np.ndarray) -> PeerMesh | None:
        img = np.ascontiguousarray(image, dtype=np.uint8)
        h, w = img.shape[:2]
        res = self._mesh.process(img)
        if not res.multi_face_landmarks:
            return None
        lms = res.multi_face_landmarks[0].landmark
        a = np.array([[p.x, p.y, p.z] for p in lms[:N_MESH_POINTS]], dtype=np.float64)
        px = np.stack([a[:, 0] * w - 0.5, a[:, 1] * h - 0.5, a[:, 2] * w], axis=-1)
        vertices = pixels_to_model_axes(px)
        return PeerMesh(
            vertices, outward(vertices, self.triangles), mediapipe_five_points(vertices)
        )

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> MediapipeFaceMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

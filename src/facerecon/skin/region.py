"""Face-skin region from 68 landmarks: convex hull minus eyes, brows and mouth."""

from __future__ import annotations

import cv2
import numpy as np

from facerecon.errors import ImageError

_EYES = (range(36, 42), range(42, 48))
_BROWS = (range(17, 22), range(22, 27))
_MOUTH = range(48, 60)


def landmark_face_region(
    height: int, width: int, lm68: np.ndarray, brow_thickness: float = 0.12
) -> np.ndarray:
    """Pixels of the landmark face region: hull of the 68 points minus eyes, brows and mouth.

    Eyes (36..41, 42..47) and the outer lip contour (48..59) are removed as filled polygons. The
    brows (17..21, 22..26) are open curves, so they are removed as polylines drawn with a
    thickness of ``brow_thickness`` x the outer eye-corner distance (36 to 45).

    Args:
        height, width: image size.
        lm68: ``(68, 2)`` landmarks (x, y) in pixels, 0-based 300-W / iBUG order.
        brow_thickness: brow stroke width relative to the eye-corner distance.

    Returns:
        ``(height, width)`` bool mask.
    """
    lm68 = np.asarray(lm68, dtype=np.float64)
    if lm68.shape != (68, 2):
        raise ImageError(f"expected 68 landmarks (68, 2), got {lm68.shape}")
    shift = 4  # cv2 fixed-point: sub-pixel vertex positions
    pts = np.round(lm68 * (1 << shift)).astype(np.int32)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(pts), 1, lineType=cv2.LINE_8, shift=shift)
    for part in (*_EYES, _MOUTH):
        cv2.fillPoly(mask, [pts[list(part)]], 0, lineType=cv2.LINE_8, shift=shift)
    eye_dist = float(np.linalg.norm(lm68[45] - lm68[36]))
    thick = max(1, round(brow_thickness * eye_dist))
    for part in _BROWS:
        cv2.polylines(mask, [pts[list(part)]], False, 0, thick, cv2.LINE_8, shift)
    return mask.astype(bool)

"""Box and point geometry shared by the detection backends (pure numpy).

Coordinates follow OpenCV: pixel (row r, col c) has its centre at ``(x=c, y=r)``; a box is
``(4,)`` ``x0, y0, x1, y1`` with x1, y1 exclusive (so ``x1 - x0`` is the width).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from facerecon.detect.faces import Face

__all__ = [
    "iou",
    "level_tiles",
    "nms",
    "rank",
    "resize_for_detection",
    "sort_largest_first",
    "tile_levels",
    "unscale_box",
    "unscale_points",
]


def resize_for_detection(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float, float]:
    """Downscale so the longer side is <= max_side. Returns (copy, fx, fy) with fx = W'/W."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image, 1.0, 1.0
    f = max_side / max(h, w)
    nw, nh = max(1, round(w * f)), max(1, round(h * f))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return small, nw / w, nh / h


def tile_levels(
    height: int, width: int, base: int = 512, ratio: float = 1.5
) -> list[list[tuple[int, int, int, int]]]:
    """Overlapping square tiles ``(x0, y0, x1, y1)`` covering an image, level by level from the
    coarsest, for detectors that see the whole image at a fixed small input (MediaPipe's face
    detector: 192 px, so faces under ~10 % of the image's side go unseen).

    Level sides ``t`` run from the shorter side (one step less when the image is square: that
    level would be the image itself) down by ``ratio`` to ``min(base, shorter side)``; each is
    tiled with stride ``t / 2`` (clipped to the image), so a face of up to ``t / 2`` lies whole
    in some tile of its level, and the levels' face sizes overlap. A 1080p photo gets 3 + 10 +
    28 tiles (sides 1080, 720, 512); a 30000 x 200 strip 299 tiles of 200 px. A search for the
    largest face can stop at the first level that has one (the coarsest finds the largest).
    """
    short, long = min(height, width), max(height, width)
    last = max(1, min(base, short))
    t = float(short) if short < long else short / ratio
    sides = []
    while t > last * 1.001:
        sides.append(round(t))
        t /= ratio
    if last < long:
        sides.append(last)
    out = []
    for t in sides:
        step = max(1, t // 2)
        ys = list(range(0, max(height - t, 0) + 1, step))
        xs = list(range(0, max(width - t, 0) + 1, step))
        if ys[-1] + t < height:
            ys.append(height - t)
        if xs[-1] + t < width:
            xs.append(width - t)
        out.append([(x, y, min(x + t, width), min(y + t, height)) for y in ys for x in xs])
    return out


def level_tiles(
    image: np.ndarray, level: list[tuple[int, int, int, int]], px: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One :func:`tile_levels` level's tiles of ``image (H, W, C)``, each at most ``px``
    pixels a side: ``[(pixels (h, w, C), (ox, oy, fx, fy))]``; a box ``b`` (edges, in tile
    pixels) is ``unscale_box(b, fx, fy) + (ox, oy, ox, oy)`` in the photo.

    The image is area-reduced once per level (factor ``px / side``) and the tiles are cut from
    that copy: a 1080p photo's 720 px level takes one resize instead of ten (~3 ms each). A
    tile's pixels then differ from reducing the tile alone only by where the reduction's cells
    fall; its origin ``(ox, oy)`` is where its copy pixels start, within half a copy pixel of the
    tile's corner. Tiles already at most ``px`` a side are cut from the image itself."""
    if not level:
        return []
    side = max(max(x1 - x0, y1 - y0) for x0, y0, x1, y1 in level)
    h, w = image.shape[:2]
    if side <= px:
        return [(image[y0:y1, x0:x1], np.array([x0, y0, 1.0, 1.0])) for x0, y0, x1, y1 in level]
    f = px / side
    sw, sh = max(1, round(w * f)), max(1, round(h * f))
    small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
    fx, fy = sw / w, sh / h
    out = []
    for x0, y0, x1, y1 in level:
        tw, th = min(sw, max(1, round((x1 - x0) * fx))), min(sh, max(1, round((y1 - y0) * fy)))
        sx, sy = min(round(x0 * fx), sw - tw), min(round(y0 * fy), sh - th)
        out.append((small[sy : sy + th, sx : sx + tw], np.array([sx / fx, sy / fy, fx, fy])))
    return out


def unscale_points(pts: np.ndarray, fx: float, fy: float) -> np.ndarray:
    """Map ``(..., 2+)`` pixel-centre coordinates of a resized copy back to the original (only
    x and y; further columns are kept)."""
    if fx == 1.0 and fy == 1.0:
        return pts
    out = np.asarray(pts, dtype=np.float64).copy()
    out[..., 0] = (out[..., 0] + 0.5) / fx - 0.5
    out[..., 1] = (out[..., 1] + 0.5) / fy - 0.5
    return out


def unscale_box(box: np.ndarray, fx: float, fy: float) -> np.ndarray:
    """Box edges (x0, y0, x1, y1) of a resized copy -> original (edges scale without offset)."""
    return np.asarray(box, dtype=np.float64) / np.array([fx, fy, fx, fy])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes ``(4,)``."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms(boxes: list[np.ndarray], scores: list[float], thresh: float = 0.3) -> list[int]:
    """Indices kept by greedy non-maximum suppression (highest score first)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    for i in order:
        if all(iou(boxes[i], boxes[j]) <= thresh for j in keep):
            keep.append(int(i))
    return keep


def rank(box: np.ndarray, score: float) -> float:
    """Ordering key: box area weighted by ``exp(score)`` (score clipped to [-2, 3]).

    Plain "largest first" lets a weak HOG false positive (score ~0.1) outrank a real face of
    about the same size (score ~1.6) in astronaut.jpg; the weight breaks such near-ties by
    confidence while a face clearly larger than another still comes first.
    """
    area = max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)
    return float(area * np.exp(np.clip(score, -2.0, 3.0)))


def sort_largest_first(faces: list[Face]) -> list[Face]:
    """Faces ordered by :func:`rank` (largest, most confident first)."""
    return sorted(faces, key=lambda f: -rank(f.box, f.score))

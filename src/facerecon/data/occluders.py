"""Occluders drawn over synthetic faces: sunglasses, hands, hair strands, microphones, objects.

Each drawing function takes a seeded :class:`numpy.random.Generator`, the image size ``S`` and the
face's ``(68, 2)`` landmark pixels, and returns a layer ``(rgb (S, S, 3), alpha (S, S))`` in
float32 0..1 (anti-aliased OpenCV drawing, simple shading gradients). :func:`add_occluders`
composites one or two of them and returns the photo and the occluder mask ``alpha > 0.5``.

Kinds and placement (face scale ``s`` = the landmarks' bounding-box size):

* ``sunglasses``: two dark tinted lenses (ellipses over the eye centres, oriented along the eye
  line) with a frame, bridge and temples towards the jaw ends.
* ``hand``: palm (rotated rounded quadrilateral, ~0.5 s) with four fingers and a thumb (capsules)
  and a forearm reaching the image border, in a skin colour, over the mouth / cheek / chin.
* ``hair``: 15-70 cubic Bezier strands from above the brows down across forehead, eyes, cheek.
* ``microphone``: a ball head with a mesh pattern near the mouth, handle to the image bottom.
* ``object``: a phone, a cup, a textured polygon or a scarf band over the lower face.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "OCCLUDER_KINDS",
    "add_occluders",
    "draw_hair",
    "draw_hand",
    "draw_microphone",
    "draw_object",
    "draw_sunglasses",
]

OCCLUDER_KINDS = ("sunglasses", "hand", "hair", "microphone", "object")
_SHIFT = 3  # fractional bits for sub-pixel OpenCV drawing
_ONE = 1 << _SHIFT


def _pt(p) -> tuple[int, int]:
    return round(float(p[0]) * _ONE), round(float(p[1]) * _ONE)


def _poly(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points, np.float64) * _ONE).astype(np.int32)


def _face_frame(lm2d: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Face centre ``(2,)``, scale (bounding-box size, px) and eye-line angle (radians)."""
    lo, hi = lm2d.min(0), lm2d.max(0)
    eye_r, eye_l = lm2d[36:42].mean(0), lm2d[42:48].mean(0)
    d = eye_l - eye_r
    return 0.5 * (lo + hi), float(max(hi - lo).max()), float(np.arctan2(d[1], d[0]))


def _shade(rng: np.random.Generator, S: int, centre, size: float) -> np.ndarray:
    """``(S, S, 1)`` linear shading ramp 0.65..1.15 across an object of ``size`` at ``centre``."""
    a = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:S, 0:S].astype(np.float32)
    t = ((x - centre[0]) * np.cos(a) + (y - centre[1]) * np.sin(a)) / max(size, 1.0)
    return np.clip(0.9 + 0.25 * t, 0.65, 1.15)[..., None].astype(np.float32)


def _layer(S: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((S, S, 3), np.float32), np.zeros((S, S), np.float32)


def draw_sunglasses(rng: np.random.Generator, S: int, lm2d: np.ndarray):
    """Sunglasses layer ``(rgb, alpha)`` over the eyes."""
    rgb, alpha = _layer(S)
    _, s, ang = _face_frame(lm2d)
    eyes = [lm2d[36:42].mean(0), lm2d[42:48].mean(0)]
    iod = max(float(np.linalg.norm(eyes[1] - eyes[0])), 0.25 * s)
    ax = (iod * rng.uniform(0.42, 0.55), iod * rng.uniform(0.3, 0.42))
    tint = np.array([0.05, 0.05, 0.06]) + rng.uniform(0, 0.15, 3)
    frame = (rng.uniform(0, 0.3, 3) if rng.random() < 0.7 else rng.uniform(0.3, 0.9, 3)).tolist()
    thick = max(1, round(s * rng.uniform(0.015, 0.035)))
    deg = float(np.rad2deg(ang))
    lens = np.zeros((S, S), np.float32)
    for e in eyes:
        c = e + np.array([0.0, ax[1] * 0.15])
        axes = (round(ax[0] * _ONE), round(ax[1] * _ONE))
        cv2.ellipse(lens, _pt(c), axes, deg, 0, 360, 1.0, -1, cv2.LINE_AA, _SHIFT)
        cv2.ellipse(rgb, _pt(c), axes, deg, 0, 360, frame, thick, cv2.LINE_AA, _SHIFT)
        cv2.ellipse(alpha, _pt(c), axes, deg, 0, 360, 1.0, thick, cv2.LINE_AA, _SHIFT)
    # lens: dark tint with a soft diagonal reflection
    refl = _shade(rng, S, 0.5 * (eyes[0] + eyes[1]), iod)
    lens_rgb = np.clip(tint * refl, 0, 1)
    rgb[:] = np.where((lens > 0)[..., None] & (alpha[..., None] < 0.5), lens_rgb, rgb)
    alpha[:] = np.maximum(alpha, lens * rng.uniform(0.92, 1.0))
    u = np.array([np.cos(ang), np.sin(ang)])
    bridge = [eyes[0] + u * ax[0] * 0.9, eyes[1] - u * ax[0] * 0.9]
    temples = [(eyes[0] - u * ax[0], lm2d[0]), (eyes[1] + u * ax[0], lm2d[16])]
    for a, b in [tuple(bridge), *temples]:
        cv2.line(rgb, _pt(a), _pt(b), frame, thick, cv2.LINE_AA, _SHIFT)
        cv2.line(alpha, _pt(a), _pt(b), 1.0, thick, cv2.LINE_AA, _SHIFT)
    return rgb, alpha


def draw_hand(rng: np.random.Generator, S: int, lm2d: np.ndarray, skin_rgb: np.ndarray):
    """Hand layer: palm, four fingers, thumb and forearm in ``skin_rgb (3,)`` (0..1)."""
    rgb, alpha = _layer(S)
    centre, s, _ = _face_frame(lm2d)
    target = lm2d[[48, 54, 8, 3, 13, 57, 31, 35]][int(rng.integers(0, 8))]
    target = target + rng.normal(0, 0.08 * s, 2)
    up = rng.uniform(-np.pi / 2 - 1.0, -np.pi / 2 + 1.0)  # fingers point roughly up
    if rng.random() < 0.3:
        up += np.pi / 2 * (1 if target[0] < centre[0] else -1)  # from the side
    u = np.array([np.cos(up), np.sin(up)])  # along the fingers
    v = np.array([-u[1], u[0]])
    pw, ph = s * rng.uniform(0.38, 0.55), s * rng.uniform(0.4, 0.55)
    base = target - u * ph * 0.5
    palm = np.array(
        [
            base - v * pw * 0.42,
            base + v * pw * 0.42,
            base + u * ph + v * pw * 0.5,
            base + u * ph - v * pw * 0.5,
        ]
    )
    mask = np.zeros((S, S), np.float32)
    cv2.fillPoly(mask, [_poly(palm)], 1.0, cv2.LINE_AA, _SHIFT)
    fw = pw / 4.2
    curl = rng.uniform(0.4, 1.0)
    for k in range(4):
        root = base + u * ph + v * pw * (-0.375 + 0.25 * k)
        length = ph * curl * (0.75, 0.9, 0.85, 0.65)[k] * rng.uniform(0.9, 1.1)
        bend = v * rng.normal(0, 0.08) * length
        tip = root + u * length + bend
        cv2.line(mask, _pt(root), _pt(tip), 1.0, max(1, round(fw)), cv2.LINE_AA, _SHIFT)
    side = 1.0 if rng.random() < 0.5 else -1.0
    t_root = base + u * ph * 0.35 + side * v * pw * 0.45
    t_tip = t_root + (side * v * 0.8 + u * 0.6) * ph * 0.5
    cv2.line(mask, _pt(t_root), _pt(t_tip), 1.0, max(1, round(fw * 1.1)), cv2.LINE_AA, _SHIFT)
    arm_end = base - u * 3.0 * S  # forearm to beyond the border
    cv2.line(mask, _pt(base), _pt(arm_end), 1.0, max(1, round(pw * 0.7)), cv2.LINE_AA, _SHIFT)
    col = np.clip(np.asarray(skin_rgb, np.float32) * rng.uniform(0.85, 1.1), 0, 1)
    shade = _shade(rng, S, target, s * 0.6)
    rgb[:] = np.clip(col * shade, 0, 1)
    # finger creases: darker lines between fingers
    for k in range(1, 4):
        root = base + u * ph + v * pw * (-0.5 + 0.25 * k)
        a, b = root - u * ph * 0.15, root + u * ph * 0.45 * curl
        cv2.line(rgb, _pt(a), _pt(b), (col * 0.7).tolist(), 1, cv2.LINE_AA, _SHIFT)
    alpha[:] = mask
    return rgb * (mask[..., None] > 0), alpha


def _bezier(p0, p1, p2, p3, n: int = 24) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def draw_hair(rng: np.random.Generator, S: int, lm2d: np.ndarray):
    """Hair strands layer: cubic Bezier curves from above the brows across the upper face."""
    rgb, alpha = _layer(S)
    _, s, _ = _face_frame(lm2d)
    palette = np.array(
        [
            [0.05, 0.04, 0.03],
            [0.18, 0.11, 0.06],
            [0.35, 0.22, 0.1],
            [0.75, 0.6, 0.35],
            [0.5, 0.2, 0.08],
        ]
    )
    base = palette[int(rng.integers(0, len(palette)))]
    brow_top = lm2d[17:27, 1].min()
    x0, x1 = lm2d[17, 0], lm2d[26, 0]
    start_x = rng.uniform(x0 - 0.1 * s, x1 + 0.1 * s)
    sweep = rng.uniform(-0.6, 0.6) * s
    drop = rng.uniform(0.3, 0.8) * s
    width = max(1, round(S / 256 * rng.uniform(1.0, 2.5)))
    for _ in range(int(rng.integers(15, 70))):
        p0 = np.array([start_x + rng.normal(0, 0.12 * s), brow_top - rng.uniform(0.15, 0.4) * s])
        p3 = p0 + np.array([sweep + rng.normal(0, 0.1 * s), drop * rng.uniform(0.6, 1.1)])
        p1 = p0 + np.array([rng.normal(0, 0.15 * s), 0.3 * (p3[1] - p0[1])])
        p2 = p3 + np.array([rng.normal(0, 0.15 * s), -0.3 * (p3[1] - p0[1])])
        pts = _poly(_bezier(p0, p1, p2, p3))
        col = np.clip(base * rng.uniform(0.7, 1.4) + rng.normal(0, 0.02), 0, 1).tolist()
        cv2.polylines(rgb, [pts], False, col, width, cv2.LINE_AA, _SHIFT)
        cv2.polylines(alpha, [pts], False, 1.0, width, cv2.LINE_AA, _SHIFT)
    return rgb, alpha


def draw_microphone(rng: np.random.Generator, S: int, lm2d: np.ndarray):
    """Microphone layer: mesh ball head near the mouth and a handle to the image bottom."""
    rgb, alpha = _layer(S)
    _, s, _ = _face_frame(lm2d)
    mouth = lm2d[48:68].mean(0)
    r = s * rng.uniform(0.12, 0.2)
    head = mouth + np.array([rng.normal(0, 0.25 * s), rng.uniform(0.05, 0.35) * s])
    handle_dir = np.array([rng.normal(0, 0.3), 1.0])
    handle_end = head + handle_dir / np.linalg.norm(handle_dir) * 3 * S
    grey = rng.uniform(0.05, 0.25)
    hw = max(1, round(r * rng.uniform(0.5, 0.8)))
    cv2.line(rgb, _pt(head), _pt(handle_end), (grey, grey, grey), hw, cv2.LINE_AA, _SHIFT)
    cv2.line(alpha, _pt(head), _pt(handle_end), 1.0, hw, cv2.LINE_AA, _SHIFT)
    ball = np.zeros((S, S), np.float32)
    cv2.circle(ball, _pt(head), round(r * _ONE), 1.0, -1, cv2.LINE_AA, _SHIFT)
    y, x = np.mgrid[0:S, 0:S].astype(np.float32)
    step = max(r / 4.0, 2.0)
    grid = ((np.mod(x - head[0], step) < 1.0) | (np.mod(y - head[1], step) < 1.0)).astype(
        np.float32
    )
    metal = rng.uniform(0.35, 0.7)
    shade = np.clip(
        1.2 - np.hypot(x - head[0] + 0.4 * r, y - head[1] + 0.4 * r) / (2 * r), 0.4, 1.2
    )
    ball_col = (metal * (0.6 + 0.4 * (1 - grid)) * shade)[..., None] * np.ones(3, np.float32)
    rgb[:] = np.where((ball > 0)[..., None], ball_col, rgb)
    alpha[:] = np.maximum(alpha, ball)
    return rgb, alpha


def draw_object(rng: np.random.Generator, S: int, lm2d: np.ndarray):
    """Generic object layer: phone, cup, textured polygon or scarf band."""
    from facerecon.data.backgrounds import procedural

    rgb, alpha = _layer(S)
    centre, s, _ = _face_frame(lm2d)
    kind = int(rng.integers(0, 4))
    at = centre + rng.uniform(-0.5, 0.5, 2) * s
    colour = rng.uniform(0.05, 0.95, 3).astype(np.float32)
    mask = np.zeros((S, S), np.float32)
    if kind == 0:  # phone: rounded rectangle with a screen
        w, h = s * rng.uniform(0.3, 0.45), s * rng.uniform(0.55, 0.85)
        ang = rng.uniform(-40, 40)
        box = cv2.boxPoints(((float(at[0]), float(at[1])), (float(w), float(h)), float(ang)))
        cv2.fillPoly(mask, [_poly(box)], 1.0, cv2.LINE_AA, _SHIFT)
        r = max(1, round(w * 0.15))
        mask = cv2.dilate(cv2.erode(mask, np.ones((r, r), np.uint8)), np.ones((r, r), np.uint8))
        screen = np.zeros((S, S), np.float32)
        inner = cv2.boxPoints(
            ((float(at[0]), float(at[1])), (float(w * 0.85), float(h * 0.8)), ang)
        )
        cv2.fillPoly(screen, [_poly(inner)], 1.0, cv2.LINE_AA, _SHIFT)
        body = np.full((S, S, 3), rng.uniform(0.02, 0.3), np.float32)
        rgb[:] = np.where((screen > 0.5)[..., None], procedural(rng, S) * 0.8, body)
    elif kind == 1:  # cup: trapezoid body, elliptic rim, handle
        w, h = s * rng.uniform(0.3, 0.45), s * rng.uniform(0.35, 0.5)
        dy, dx = np.array([0.0, h / 2]), np.array([w / 2, 0.0])
        top, bot = at - dy, at + dy
        body = np.array([top - dx, top + dx, bot + 0.8 * dx, bot - 0.8 * dx])
        cv2.fillPoly(mask, [_poly(body)], 1.0, cv2.LINE_AA, _SHIFT)
        axes = (round(w / 2 * _ONE), round(w * 0.12 * _ONE))
        cv2.ellipse(mask, _pt(top), axes, 0, 0, 360, 1.0, -1, cv2.LINE_AA, _SHIFT)
        side = 1 if rng.random() < 0.5 else -1
        hc = at + np.array([side * w * 0.5, 0.0])
        haxes = (round(w * 0.25 * _ONE), round(h * 0.25 * _ONE))
        th = max(1, round(w * 0.08))
        arc = (-90, 90) if side > 0 else (90, 270)
        cv2.ellipse(mask, _pt(hc), haxes, 0, *arc, 1.0, th, cv2.LINE_AA, _SHIFT)
        rgb[:] = colour * _shade(rng, S, at, w)
    elif kind == 2:  # irregular textured polygon
        n = int(rng.integers(5, 10))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = s * rng.uniform(0.15, 0.4) * rng.uniform(0.6, 1.0, n)
        pts = at + np.stack([np.cos(ang), np.sin(ang)], 1) * rad[:, None]
        cv2.fillPoly(mask, [_poly(pts)], 1.0, cv2.LINE_AA, _SHIFT)
        rgb[:] = procedural(rng, S) * _shade(rng, S, at, float(rad.max()))
    else:  # scarf / mask band over the lower face
        chin, nose = lm2d[8], lm2d[33]
        y_top = rng.uniform(nose[1], 0.5 * (nose[1] + chin[1]))
        band = np.array(
            [
                [lm2d[2, 0] - 0.1 * s, y_top],
                [lm2d[14, 0] + 0.1 * s, y_top + rng.normal(0, 0.05 * s)],
            ]
        )
        poly = np.array(
            [band[0], band[1], [band[1, 0], chin[1] + 0.3 * s], [band[0, 0], chin[1] + 0.3 * s]]
        )
        cv2.fillPoly(mask, [_poly(poly)], 1.0, cv2.LINE_AA, _SHIFT)
        tex = procedural(rng, S)
        rgb[:] = 0.5 * tex + 0.5 * colour * _shade(rng, S, at, s)
    alpha[:] = mask
    return np.clip(rgb, 0, 1).astype(np.float32), alpha


def add_occluders(
    rng: np.random.Generator,
    photo: np.ndarray,
    lm2d: np.ndarray,
    skin_rgb: np.ndarray,
    kinds: tuple[str, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Composite one (70 %) or two occluders onto ``photo (S, S, 3)`` float 0..1.

    Args:
        rng: seeded generator.
        photo: ``(S, S, 3)`` float32 RGB.
        lm2d: ``(68, 2)`` face landmark pixels (placement).
        skin_rgb: ``(3,)`` skin colour for hands.
        kinds: draw exactly these kinds (default: random from ``OCCLUDER_KINDS``).

    Returns:
        The composited photo and the occluder mask ``(S, S)`` bool (layer alpha > 0.5).
    """
    S = photo.shape[0]
    if kinds is None:
        n = 1 if rng.random() < 0.7 else 2
        kinds = tuple(rng.choice(OCCLUDER_KINDS, size=n, replace=False).tolist())
    occ = np.zeros((S, S), bool)
    out = photo.astype(np.float32).copy()
    for kind in kinds:
        if kind == "sunglasses":
            rgb, a = draw_sunglasses(rng, S, lm2d)
        elif kind == "hand":
            rgb, a = draw_hand(rng, S, lm2d, skin_rgb)
        elif kind == "hair":
            rgb, a = draw_hair(rng, S, lm2d)
        elif kind == "microphone":
            rgb, a = draw_microphone(rng, S, lm2d)
        elif kind == "object":
            rgb, a = draw_object(rng, S, lm2d)
        else:
            raise ValueError(f"unknown occluder kind {kind!r}; use one of {OCCLUDER_KINDS}")
        a = np.clip(a, 0, 1)[..., None]
        out = out * (1 - a) + rgb * a
        occ |= a[..., 0] > 0.5
    return out, occ

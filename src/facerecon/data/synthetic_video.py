"""Synthetic videos with known per-frame pose and shape: a head turning and talking.

:func:`head_motion` and :func:`talking` make smooth per-frame rotation and expression tracks;
:func:`write_synthetic_clip` renders them with the synthetic engine
(:meth:`facerecon.data.synthetic.SyntheticFaces.sequence`: fixed identity, camera, light and
background), encodes the frames as an MP4 (the same lossy path a real clip takes) and returns
the truth: ``angles (F, 3)`` radians, ``exp_coeff (F, n_exp)``, ``trans (F, 3)``,
``id_coeff``, ``neutral (N, 3)`` mm and ``lm68 (F, 68, 2)`` pixels, also saved as
``<clip>.truth.npz`` next to the video.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["head_motion", "talking", "write_synthetic_clip"]


def head_motion(
    n: int,
    fps: float,
    max_yaw_deg: float = 60.0,
    max_pitch_deg: float = 10.0,
    max_roll_deg: float = 4.0,
    turns: float = 1.0,
    phase: float = 0.0,
) -> np.ndarray:
    """``(n, 3)`` rotations (radians, x = pitch, y = yaw, z = roll) of a head turning
    ``turns`` times from one side to the other over the clip, nodding and tilting a little."""
    t = np.arange(n) / float(fps)
    dur = max(n / float(fps), 1e-6)
    w = 2 * np.pi * turns / dur
    yaw = max_yaw_deg * np.sin(w * t + phase)
    pitch = max_pitch_deg * np.sin(1.7 * w * t + 0.5 + phase)
    roll = max_roll_deg * np.sin(0.9 * w * t + 1.3 + phase)
    return np.deg2rad(np.stack([pitch, yaw, roll], axis=1))


def talking(
    faces, n: int, fps: float, rng: np.random.Generator, rate_hz: float = 3.0
) -> np.ndarray:
    """``(n, n_exp)`` expressions changing smoothly: the engine's random expressions as
    keyframes ``rate_hz`` times a second, joined by cosine interpolation."""
    n_keys = max(2, int(np.ceil(n / float(fps) * rate_hz)) + 2)
    keys = np.stack([faces.draw_expression(rng) for _ in range(n_keys)]).astype(np.float64)
    pos = np.arange(n) / float(fps) * rate_hz
    i = np.floor(pos).astype(int)
    f = (1 - np.cos(np.pi * (pos - i))) / 2
    return keys[i] * (1 - f[:, None]) + keys[i + 1] * f[:, None]


def write_synthetic_clip(
    path: str | os.PathLike[str],
    faces,
    identity: int = 0,
    n_frames: int = 50,
    fps: float = 25.0,
    max_yaw_deg: float = 60.0,
    talk: bool = True,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Render and encode one clip (module docstring); returns the truth arrays.

    Args:
        path: the MP4 to write (its folder must exist); ``<stem>.truth.npz`` goes beside it.
        faces: a :class:`facerecon.data.synthetic.SyntheticFaces` engine (its config decides
            resolution, albedo, occluders and degradations).
        identity: engine identity of the person.
        n_frames, fps: clip length and rate.
        max_yaw_deg: amplitude of the head turn.
        talk: vary the expression (else expression 0).
        seed: seeds the expression keyframes and the motion phase.
    """
    from facerecon.io.video import VideoWriter

    rng = np.random.default_rng([int(seed), int(identity), 91])
    angles = head_motion(n_frames, fps, max_yaw_deg, phase=float(rng.uniform(-0.3, 0.3)))
    n_exp = faces.model.layout.n_exp
    exp = talking(faces, n_frames, fps, rng) if talk else np.zeros((n_frames, n_exp))
    path = Path(path)
    truth: dict[str, list] = {"trans": [], "lm68": [], "angles": [], "exp_coeff": []}
    neutral = id_coeff = None
    size = faces.config.image_size
    with VideoWriter(path, fps, (size, size)) as writer:
        for s in faces.sequence(identity, angles, exp):
            writer.write(s.image)
            truth["trans"].append(s.coeffs["trans"])
            truth["lm68"].append(s.lm68)
            truth["angles"].append(s.coeffs["angles"])
            truth["exp_coeff"].append(s.coeffs["exp_coeff"])
            neutral, id_coeff = s.vertices_neutral, s.coeffs["id_coeff"]
    out = {k: np.stack(v).astype(np.float64) for k, v in truth.items()}
    out["id_coeff"] = np.asarray(id_coeff, np.float64)
    out["neutral"] = np.asarray(neutral, np.float64)
    out["fps"] = np.asarray(float(fps))
    np.savez(path.with_suffix(".truth.npz"), **out)
    return out

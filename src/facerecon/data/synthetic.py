"""Synthetic face engine: rendered photos whose true 3D shape, pose and labels are known.

``SyntheticFaces(model, config, seed)`` turns ``(seed, identity, condition)`` into a
:class:`FaceSample` deterministically (numpy Generators seeded from those integers; no global
random state). The identity fixes shape, albedo and skin tone; the condition fixes expression,
pose, camera, lighting, background, occluders and image degradations.

Sampling (``GENERATOR_VERSION``; any change that alters outputs bumps it):

* identity ``id_coeff ~ N(0, id_scale^2)``; albedo ``tex_coeff ~ N(0, tex_scale^2)`` through the
  model's albedo basis, times a global skin tone (the ratio of a tone drawn from
  ``skin_tones.json``, k-means colours of the UCI skin data, to the model's mean skin colour, with
  a brightness factor U(0.75, 1.05)), plus smooth per-vertex noise (6 random 3D sinusoids, RGB
  amplitude ~0.02).
* expression: PCA models (bfm-lite, bfm09) ``N(0, 1) * exp_scale * 0.6``; blendshape models (ICT,
  weights in 0..1) sparse non-negative: 0..6 active shapes with weights U(0.2, 1) * exp_scale
  (clipped to 1), the left/right partner usually co-activated, ``jawOpen`` with probability 0.3.
* pose ``angles = (pitch, yaw, roll)`` (rotations about x, y, z; ``R = Rz Ry Rx``). Positive yaw
  turns the face towards the image right (the subject's left). ``"wide"``: yaw uniform on
  +-max_yaw half the time, else N(0, 25 deg) clipped to +-max_yaw; pitch N(0, 12 deg) clipped to
  +-max_pitch; roll N(0, 8 deg) clipped to +-max_roll. ``"frontal"``: yaw U(-30, 30) (and at most
  max_yaw), pitch N(0, 6 deg) clipped to +-15, roll N(0, 4 deg) clipped to +-10.
* camera: focal ``focal * (1 + U(-focal_jitter, focal_jitter))`` (pixels at ``image_size``);
  principal point at the image centre ``image_size / 2``; camera at ``(0, 0, 10)`` scene units
  looking down -z (``render.CameraConfig``). The face's depth is ``d0 * f / focal * (1 +
  U(-distance_jitter, distance_jitter))`` (a dolly zoom for the focal jitter, so focal changes
  perspective while distance changes size), ``d0`` chosen so the mean face spans 55 % of the
  width; its centre is placed within +-8 % of the image size of the image centre, so the face is
  fully or mostly in frame.
* light: SH ``gamma`` (27, before the renderer's ``+AMBIENT_OFFSET`` ambient, 0.8) is the
  least-squares SH fit of the irradiance ``E(n) = a * tint + s * max(0, n . l)``: mostly
  near-white ambient ``a ~ U(0.6, 0.95)`` with a per-channel tint N(0, 0.03) and a frontal-ish
  directional light ``s ~ U(0, 0.5)``; with ``hard_light_prob`` a hard side light (``a ~ U(0.2,
  0.4)``, ``s ~ U(0.7, 1.0)``, ``l`` within ~45 deg of +-x).
* head proxy: unless ``background == "flat"``, a skull disc (hair colour per identity, 12 %
  bald) and a neck are drawn behind the face mesh with the sample's pose (background label 0).
* realism (skipped when ``config.clean``): background (``facerecon.data.backgrounds``), occluders
  with ``occluder_prob`` (``facerecon.data.occluders``: sunglasses, hands, hair strands,
  microphones, generic objects), then blur / noise / JPEG (``facerecon.data.degrade``). With
  ``clean`` the background is still drawn (a flat one when ``background == "flat"``).

Labels: ``parse`` rasterizes the model's ``vertex_labels`` (nearest vertex of the visible
triangle; ``OTHER`` border vertices count as ``SKIN``). Holes of the mesh (mouth, and the eye
sockets of ICT) are filled: the mouth opening is painted as a dark cavity with teeth and labelled
``INNER_MOUTH``; eye-socket holes get an eyeball and the eye label. Occluded pixels keep their face
label; ``occluder_mask`` marks them. ``landmark_visible`` (an addition to the agreed fields) says
which landmarks are not hidden by the face itself (occluders are ignored).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

from facerecon.errors import FaceReconError
from facerecon.fileio import atomic_savez
from facerecon.geometry import euler_matrix, project_points
from facerecon.labels import Region
from facerecon.morphable import MorphableModel
from facerecon.render import AMBIENT_OFFSET, CameraConfig, render, sh_basis

__all__ = [
    "GENERATOR_VERSION",
    "FaceSample",
    "SynthConfig",
    "SynthError",
    "SyntheticFaces",
    "read_shards",
    "write_shards",
]

GENERATOR_VERSION = "synthetic-faces-v1"

_SKIN_TONES = Path(__file__).with_name("skin_tones.json")
_HAIR = np.array(
    [[0.05, 0.04, 0.03], [0.16, 0.1, 0.06], [0.32, 0.2, 0.1], [0.7, 0.56, 0.33], [0.45, 0.18, 0.07]]
)
_CAM_DIST = 10.0
_MM_PER_UNIT = 100.0
_FACE_WIDTH_FRACTION = 0.55
_CENTRE_JITTER = 0.08
# Seed-stream tags: identity and condition draws never share a stream.
_TAG_IDENTITY, _TAG_CONDITION, _TAG_TRIPLE, _TAG_VIEW, _TAG_SEQUENCE = 1, 2, 3, 4, 5


class SynthError(FaceReconError):
    """Bad synthetic-data configuration or an unreadable shard folder."""


@dataclass
class SynthConfig:
    """Knobs of the generator (see the module docstring for the distributions).

    Attributes:
        image_size: square photo size in pixels; the face spans roughly 40-70 % of the width.
        focal: focal length in pixels *at image_size* (default: the paper's 1015 px at 224,
            scaled to 256).
        focal_jitter, distance_jitter: relative uniform +- jitter of focal and face distance.
        max_yaw_deg, max_pitch_deg, max_roll_deg: pose limits.
        pose: ``"wide"`` (full ranges) or ``"frontal"`` (|yaw| <= 30).
        id_scale, exp_scale, tex_scale: coefficient spreads.
        hard_light_prob: probability of a hard side light.
        background: ``"procedural"``, ``"photo"``, ``"mixed"`` or ``"flat"``.
        occluder_prob, blur_prob, noise_prob, jpeg_prob: degradation probabilities.
        clean: no occluders, blur, noise or JPEG (for unit tests).
        albedo: ``"model"`` (the model's albedo basis x skin tone + smooth noise) or
            ``"photo"`` (photo textures, :mod:`facerecon.data.photo_albedo`: one per identity,
            times the skin tone and the albedo basis' variation; photo-like eyes, brows,
            lips and skin detail, and the source person's shading baked in) or
            ``"photo-detail"`` (the model albedo times the textures' detail,
            :func:`facerecon.data.photo_albedo.detail_ratio`: the same detail, the shading
            only the true shape's; the benchmarks' renders).
        texture_dir: the photo textures (None: the ones shipped with facerecon).
    """

    image_size: int = 256
    focal: float = 1015.0 * 256 / 224
    focal_jitter: float = 0.15
    distance_jitter: float = 0.15
    max_yaw_deg: float = 90.0
    max_pitch_deg: float = 40.0
    max_roll_deg: float = 30.0
    pose: str = "wide"
    id_scale: float = 1.0
    exp_scale: float = 1.0
    tex_scale: float = 1.0
    hard_light_prob: float = 0.2
    background: str = "mixed"
    occluder_prob: float = 0.3
    blur_prob: float = 0.2
    noise_prob: float = 0.3
    jpeg_prob: float = 0.5
    clean: bool = False
    albedo: str = "model"
    texture_dir: str | None = None

    def __post_init__(self) -> None:
        if self.albedo not in ("model", "photo", "photo-detail"):
            raise SynthError(
                f"unknown albedo {self.albedo!r}: use 'model', 'photo' or 'photo-detail'"
            )
        if self.pose not in ("wide", "frontal"):
            raise SynthError(f"unknown pose mode {self.pose!r}: use 'wide' or 'frontal'")
        if self.background not in ("procedural", "photo", "mixed", "flat"):
            raise SynthError(
                f"unknown background {self.background!r}: use procedural, photo, mixed or flat"
            )
        if self.image_size < 32:
            raise SynthError(f"image_size must be at least 32, got {self.image_size}")
        if self.focal <= 0:
            raise SynthError(f"focal must be positive, got {self.focal}")


@dataclass
class FaceSample:
    """One synthetic photo with its ground truth (shapes: ``H = W = image_size``).

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB photo.
        vertices_model: ``(N, 3)`` mm, model space, identity + expression.
        vertices_neutral: ``(N, 3)`` mm, model space, identity only (expression 0).
        vertices_camera: ``(N, 3)`` mm, camera frame (x right, y up, z towards the camera; camera
            at the origin looking down -z): scene point ``p`` -> ``(p.x, p.y, p.z - cam_dist) *
            mm_per_unit``.
        triangles: ``(F, 3)`` int64.
        lm68: ``(68, 2)`` landmark pixels (OpenCV pixel-centre convention).
        lm68_3d: ``(68, 3)`` landmark points in mm, model space
            (``vertices_model[landmark_indices]``).
        landmark_indices: ``(68,)`` vertex indices of the landmarks.
        nose_index: vertex index of the nose tip (landmark 30).
        parse: ``(H, W)`` uint8 :class:`facerecon.labels.Region` values.
        occluder_mask: ``(H, W)`` bool, pixels covered by an occluder.
        coeffs: ``id_coeff, exp_coeff, tex_coeff, angles, gamma, trans`` (model-native, 1-D).
        camera: ``focal, size, center, cam_dist, mm_per_unit, near, far``
            (``CameraConfig(**camera)`` reproduces the render camera).
        identity, condition, seed, model_name: provenance.
        landmark_visible: ``(68,)`` bool, landmark not hidden by the face itself (addition).
    """

    image: np.ndarray
    vertices_model: np.ndarray
    vertices_neutral: np.ndarray
    vertices_camera: np.ndarray
    triangles: np.ndarray
    lm68: np.ndarray
    lm68_3d: np.ndarray
    landmark_indices: np.ndarray
    nose_index: int
    parse: np.ndarray
    occluder_mask: np.ndarray
    coeffs: dict[str, np.ndarray]
    camera: dict
    identity: int
    condition: int
    seed: int
    model_name: str
    landmark_visible: np.ndarray | None = field(default=None)


# ---------------------------------------------------------------------------- pure helpers
def camera_vertices(
    vertices_mm: np.ndarray, angles: np.ndarray, trans: np.ndarray, camera: dict
) -> np.ndarray:
    """``(N, 3)`` mm in the camera frame (camera at the origin looking down -z).

    Scene point ``p = (v / mm_per_unit) @ R^T + trans`` (the render camera's pose, numpy:
    :func:`facerecon.geometry.euler_matrix`) maps to ``(p.x, p.y, p.z - cam_dist) *
    mm_per_unit``. Computed in float64, returned as float32.
    """
    unit = float(camera["mm_per_unit"])
    R = euler_matrix(angles)
    p = (vertices_mm.astype(np.float64) / unit) @ R.T + np.asarray(trans, np.float64)
    p[:, 2] -= float(camera["cam_dist"])
    return (p * unit).astype(np.float32)


def project_camera(points_camera_mm: np.ndarray, camera: dict) -> np.ndarray:
    """``(K, 2)`` pixels of camera-frame points ``(K, 3)`` mm: the render camera's projection
    (:func:`facerecon.geometry.project_points`) with the camera at the frame's origin,
    ``u = c + f x / -z``, ``v = c - f y / -z``."""
    f, c = float(camera["focal"]), float(camera["center"])
    return project_points(points_camera_mm, f, c, cam_dist=0.0)


@lru_cache(maxsize=1)
def _sh_fit_matrix() -> np.ndarray:
    """``(9, M)`` least-squares map from irradiance samples on M sphere normals to SH gamma."""
    m = 800
    k = np.arange(m) + 0.5
    phi = np.arccos(1 - 2 * k / m)
    theta = np.pi * (1 + 5**0.5) * k
    n = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)
    Y = sh_basis(torch.from_numpy(n)).numpy()
    return np.linalg.pinv(Y), n


def sh_gamma(ambient: np.ndarray, strength: float, direction: np.ndarray) -> np.ndarray:
    """``(27,)`` gamma (renderer convention: before ``+AMBIENT_OFFSET``) for
    ``E(n) = ambient + s max(0, n.l)``.

    Args:
        ambient: ``(3,)`` RGB ambient irradiance.
        strength: directional irradiance ``s``.
        direction: ``(3,)`` direction towards the light (scene orientation, +z to the camera).
    """
    P, n = _sh_fit_matrix()
    d = np.asarray(direction, np.float64)
    d = d / np.linalg.norm(d)
    lobe = np.maximum(n @ d, 0.0)
    g = np.stack([P @ (float(a) + strength * lobe) for a in ambient])  # (3, 9)
    g[:, 0] -= AMBIENT_OFFSET
    return g.reshape(27).astype(np.float32)


def _irradiance_front(gamma: np.ndarray) -> np.ndarray:
    """``(3,)`` RGB irradiance for a normal facing the camera."""
    Y = sh_basis(torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)).numpy()[0]
    g = gamma.reshape(3, 9).astype(np.float64).copy()
    g[:, 0] += AMBIENT_OFFSET
    return g @ Y


@lru_cache(maxsize=1)
def _skin_tones() -> tuple[np.ndarray, np.ndarray]:
    table = json.loads(_SKIN_TONES.read_text())
    w = np.asarray(table["weight"], np.float64)
    return np.asarray(table["rgb"], np.float64), w / w.sum()


def _boundary_loops(triangles: np.ndarray) -> list[np.ndarray]:
    """Closed loops of boundary vertices ``[(L,) ...]`` of a triangle mesh."""
    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    key = e[:, 0].astype(np.int64) * (1 << 32) + e[:, 1]
    rev = e[:, 1].astype(np.int64) * (1 << 32) + e[:, 0]
    boundary = e[~np.isin(key, rev)]
    nxt: dict[int, int] = {int(a): int(b) for a, b in boundary}
    loops, seen = [], set()
    for start in nxt:
        if start in seen:
            continue
        loop, cur = [], start
        while cur not in seen and cur in nxt:
            seen.add(cur)
            loop.append(cur)
            cur = nxt[cur]
        if len(loop) >= 3:
            loops.append(np.asarray(loop, np.int64))
    return loops


@dataclass
class _ModelInfo:
    """Per-model constants derived once (numpy)."""

    name: str
    n_id: int
    n_exp: int
    n_tex: int
    triangles: np.ndarray
    landmarks: np.ndarray
    parse_labels: np.ndarray  # (N,) uint8, OTHER -> SKIN
    holes: list[tuple[np.ndarray, int]]  # (loop vertex indices, Region) of the inner holes
    centre_mm: np.ndarray  # (3,) centre of the front vertices of the mean shape
    width_mm: float
    ref_skin: np.ndarray  # (3,) mean albedo of skin vertices
    blendshapes: bool
    exp_names: list[str]


def _model_info(model: MorphableModel) -> _ModelInfo:
    mean = model.mean_shape.detach().cpu().double().numpy()
    tri = model.triangles.detach().cpu().numpy().astype(np.int64)
    lm = model.landmarks68.detach().cpu().numpy().astype(np.int64)
    labels = model.vertex_labels.detach().cpu().numpy().copy()
    labels[labels == int(Region.OTHER)] = int(Region.SKIN)
    front = model.front_mask.detach().cpu().numpy()
    skin = model.skin_mask.detach().cpu().numpy()
    tex_mean = model.tex_mean.detach().cpu().double().numpy()
    loops = _boundary_loops(tri)
    holes = []
    if loops:
        outer = max(range(len(loops)), key=lambda i: len(loops[i]))
        mouth_c = mean[lm[60:68]].mean(0)
        eye_c = {
            Region.RIGHT_EYE: mean[lm[36:42]].mean(0),
            Region.LEFT_EYE: mean[lm[42:48]].mean(0),
        }
        for i, loop in enumerate(loops):
            if i == outer:
                continue
            c = mean[loop].mean(0)
            cands = {Region.INNER_MOUTH: mouth_c, **eye_c}
            region = min(cands, key=lambda r: np.linalg.norm(cands[r] - c))
            if np.linalg.norm(cands[region] - c) < 25.0:
                holes.append((loop, int(region)))
    meta_names = model.meta.get("expression_names") if hasattr(model, "meta") else None
    blend = "blendshape" in str(model.meta.get("expression_coeffs", "")) or model.name == "ict"
    pts = mean[front] if front.any() else mean
    return _ModelInfo(
        name=model.name,
        n_id=model.layout.n_id,
        n_exp=model.layout.n_exp,
        n_tex=model.layout.n_tex,
        triangles=tri,
        landmarks=lm,
        parse_labels=labels.astype(np.uint8),
        holes=holes,
        centre_mm=pts.mean(0),
        width_mm=float(np.ptp(pts[:, 0])),
        ref_skin=tex_mean[skin].mean(0) if skin.any() else tex_mean.mean(0),
        blendshapes=bool(blend),
        exp_names=list(meta_names) if isinstance(meta_names, list) else [],
    )


# ---------------------------------------------------------------------------- the generator
@dataclass
class _Identity:
    id_coeff: np.ndarray
    tex_coeff: np.ndarray
    tone: np.ndarray  # (3,) multiplier on the model albedo
    noise_freq: np.ndarray  # (6, 3) 1/mm
    noise_phase: np.ndarray  # (6,)
    noise_amp: np.ndarray  # (6, 3)
    eye_colour: np.ndarray  # (3,)
    hair_colour: np.ndarray  # (3,)
    texture: int = -1  # photo texture index (albedo="photo")


@dataclass
class _Condition:
    exp_coeff: np.ndarray
    angles: np.ndarray
    focal: float
    depth: float  # scene units from the camera to the face centre
    offset_px: np.ndarray  # (2,) face centre offset from the image centre
    gamma: np.ndarray


class SyntheticFaces:
    """Deterministic synthetic face generator over one :class:`MorphableModel`.

    Args:
        model: any face model (bfm-lite, ICT, bfm09, ...).
        config: :class:`SynthConfig` (default ``SynthConfig()``).
        seed: base seed; every sample is a pure function of ``(seed, identity, condition)``.
    """

    def __init__(
        self, model: MorphableModel, config: SynthConfig | None = None, seed: int = 0
    ) -> None:
        self.model = model
        self.config = config or SynthConfig()
        self.seed = int(seed)
        self._info = _model_info(model)
        self._photo = None
        if self.config.albedo in ("photo", "photo-detail"):
            from facerecon.data.photo_albedo import PhotoAlbedo

            self._photo = PhotoAlbedo(
                model.mean_shape.detach().cpu().double().numpy(),
                self._info.landmarks,
                self.config.texture_dir,
                detail=self.config.albedo == "photo-detail",
            )
        S = self.config.image_size
        self._d0 = (
            self.config.focal * (self._info.width_mm / _MM_PER_UNIT) / (_FACE_WIDTH_FRACTION * S)
        )

    # ------------------------------------------------------------------ draws
    def _rng(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.seed & 0xFFFFFFFF, *[int(k) & 0xFFFFFFFF for k in keys]])

    def _draw_identity(self, identity: int) -> _Identity:
        cfg, info = self.config, self._info
        rng = self._rng(_TAG_IDENTITY, identity)
        id_coeff = rng.standard_normal(info.n_id) * cfg.id_scale
        tex_coeff = rng.standard_normal(info.n_tex) * cfg.tex_scale
        tones, weights = _skin_tones()
        tone = tones[rng.choice(len(tones), p=weights)] * rng.uniform(0.75, 1.05)
        eye = np.array(
            [[0.25, 0.14, 0.07], [0.35, 0.45, 0.55], [0.3, 0.35, 0.2], [0.12, 0.08, 0.05]]
        )
        texture = -1
        if self._photo is not None:  # own stream: the other draws stay those of albedo="model"
            texture = int(self._rng(_TAG_IDENTITY, identity, 7).integers(0, len(self._photo)))
        return _Identity(
            texture=texture,
            id_coeff=id_coeff.astype(np.float32),
            tex_coeff=tex_coeff.astype(np.float32),
            tone=tone / info.ref_skin,
            noise_freq=rng.normal(0, 1 / 25.0, (6, 3)),
            noise_phase=rng.uniform(0, 2 * np.pi, 6),
            noise_amp=rng.normal(0, 0.012, (6, 3)),
            eye_colour=eye[rng.integers(0, len(eye))] * rng.uniform(0.8, 1.2),
            hair_colour=_HAIR[rng.integers(0, len(_HAIR))] * rng.uniform(0.7, 1.2),
        )

    def draw_expression(self, rng: np.random.Generator) -> np.ndarray:
        """One random expression of the engine's distribution, ``(n_exp,)``."""
        return self._draw_expression(rng)

    def _draw_expression(self, rng: np.random.Generator) -> np.ndarray:
        cfg, info = self.config, self._info
        if not info.blendshapes:
            return (rng.standard_normal(info.n_exp) * cfg.exp_scale * 0.6).astype(np.float32)
        w = np.zeros(info.n_exp)
        names = info.exp_names if len(info.exp_names) == info.n_exp else []
        for _ in range(int(rng.integers(0, 7))):
            j = int(rng.integers(0, info.n_exp))
            w[j] = rng.uniform(0.2, 1.0)
            if names and names[j][-2:] in ("_L", "_R") and rng.random() < 0.75:
                partner = names[j][:-1] + ("R" if names[j].endswith("L") else "L")
                if partner in names:
                    w[names.index(partner)] = np.clip(w[j] + rng.normal(0, 0.1), 0, 1)
        if names and "jawOpen" in names and rng.random() < 0.3:
            w[names.index("jawOpen")] = rng.uniform(0.2, 0.8)
        return np.clip(w * cfg.exp_scale, 0.0, 1.0).astype(np.float32)

    def _draw_pose(self, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        if cfg.pose == "frontal":
            lim = min(30.0, cfg.max_yaw_deg)
            yaw = rng.uniform(-lim, lim)
            pitch = np.clip(
                rng.normal(0, 6), -min(15.0, cfg.max_pitch_deg), min(15.0, cfg.max_pitch_deg)
            )
            roll = np.clip(
                rng.normal(0, 4), -min(10.0, cfg.max_roll_deg), min(10.0, cfg.max_roll_deg)
            )
        else:
            if rng.random() < 0.5:
                yaw = rng.uniform(-cfg.max_yaw_deg, cfg.max_yaw_deg)
            else:
                yaw = np.clip(rng.normal(0, 25), -cfg.max_yaw_deg, cfg.max_yaw_deg)
            pitch = np.clip(rng.normal(0, 12), -cfg.max_pitch_deg, cfg.max_pitch_deg)
            roll = np.clip(rng.normal(0, 8), -cfg.max_roll_deg, cfg.max_roll_deg)
        return np.deg2rad([pitch, yaw, roll])

    def _draw_light(self, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.config.hard_light_prob:
            a = rng.uniform(0.2, 0.4)
            s = rng.uniform(0.7, 1.0)
            side = 1.0 if rng.random() < 0.5 else -1.0
            d = np.array([side, rng.uniform(-0.3, 0.5), rng.uniform(0.0, 0.9)])
        else:
            a = rng.uniform(0.6, 0.95)
            s = rng.uniform(0.0, 0.5)
            d = np.array([rng.normal(0, 0.5), rng.uniform(-0.2, 0.8), rng.uniform(0.4, 1.0)])
        ambient = a * (1.0 + rng.normal(0, 0.03, 3))
        return sh_gamma(ambient, s, d)

    def _draw_condition(self, rng: np.random.Generator) -> _Condition:
        cfg = self.config
        exp = self._draw_expression(rng)
        angles = self._draw_pose(rng)
        fj = 1.0 + rng.uniform(-cfg.focal_jitter, cfg.focal_jitter)
        dj = 1.0 + rng.uniform(-cfg.distance_jitter, cfg.distance_jitter)
        offset = rng.uniform(-_CENTRE_JITTER, _CENTRE_JITTER, 2) * cfg.image_size
        gamma = self._draw_light(rng)
        return _Condition(exp, angles, cfg.focal * fj, self._d0 * fj * dj, offset, gamma)

    # ------------------------------------------------------------------ public API
    def sample(self, identity: int, condition: int = 0) -> FaceSample:
        """The sample of ``(seed, identity, condition)`` (deterministic)."""
        ident = self._draw_identity(identity)
        rng = self._rng(_TAG_CONDITION, identity, condition)
        cond = self._draw_condition(rng)
        return self._make(identity, condition, ident, cond, rng)

    def identity_set(self, identity: int, m: int) -> list[FaceSample]:
        """``m`` samples of one identity: conditions ``0 .. m-1`` (pose, expression, light,
        background and occluders vary; shape and albedo are fixed)."""
        return [self.sample(identity, c) for c in range(int(m))]

    def triple(
        self, identity: int, yaws_deg=(-60.0, 0.0, 60.0), condition: int = 0
    ) -> list[FaceSample]:
        """Views of one identity at the given yaws (degrees), one per entry of ``yaws_deg``.

        The views share expression, pitch, roll, camera, lighting and background (a simultaneous
        multi-camera capture); yaw is exactly the requested value; occluders and degradations are
        drawn per view. Samples carry ``condition`` (``triple(i, condition=c)`` differs from
        ``sample(i, c)``).
        """
        ident = self._draw_identity(identity)
        rng = self._rng(_TAG_TRIPLE, identity, condition)
        base = self._draw_condition(rng)
        base.angles[2] = min(abs(base.angles[2]), np.deg2rad(10.0)) * np.sign(base.angles[2])
        base.angles[0] = np.clip(base.angles[0], -np.deg2rad(15.0), np.deg2rad(15.0))
        bg_seed = int(rng.integers(0, 2**31))
        out = []
        for k, yaw in enumerate(yaws_deg):
            cond = _Condition(
                exp_coeff=base.exp_coeff,
                angles=np.array([base.angles[0], np.deg2rad(float(yaw)), base.angles[2]]),
                focal=base.focal,
                depth=base.depth,
                offset_px=base.offset_px,
                gamma=base.gamma,
            )
            view_rng = self._rng(_TAG_VIEW, identity, condition, k)
            out.append(self._make(identity, condition, ident, cond, view_rng, bg_seed=bg_seed))
        return out

    def sequence(
        self,
        identity: int,
        angles: np.ndarray,
        exp_coeff: np.ndarray,
        condition: int = 0,
    ) -> Iterator[FaceSample]:
        """Frames of one identity moving (a synthetic video), one per row of ``angles``.

        The frames share camera, distance, image offset, lighting and background (drawn once
        from ``(seed, identity, condition)``); each frame has its own rotation ``angles[f]``
        (radians, ``(F, 3)``) and expression ``exp_coeff[f]`` (``(F, n_exp)``); occluders and
        degradations are drawn per frame (set their probabilities to 0 in the config for a
        clean clip).
        """
        ident = self._draw_identity(identity)
        rng = self._rng(_TAG_SEQUENCE, identity, condition)
        base = self._draw_condition(rng)
        bg_seed = int(rng.integers(0, 2**31))
        for k, (a, e) in enumerate(zip(np.asarray(angles), np.asarray(exp_coeff), strict=True)):
            cond = _Condition(
                exp_coeff=np.asarray(e, np.float32),
                angles=np.asarray(a, np.float64),
                focal=base.focal,
                depth=base.depth,
                offset_px=base.offset_px,
                gamma=base.gamma,
            )
            view_rng = self._rng(_TAG_SEQUENCE, identity, condition, k)
            yield self._make(identity, condition, ident, cond, view_rng, bg_seed=bg_seed)

    def stream(self, n: int | None = None) -> Iterator[FaceSample]:
        """On-the-fly samples: identity ``i`` with condition 0, ``i = 0, 1, ...`` (``n`` of them,
        or endless)."""
        i = 0
        while n is None or i < n:
            yield self.sample(i, 0)
            i += 1

    def __iter__(self) -> Iterator[FaceSample]:
        return self.stream()

    # ------------------------------------------------------------------ rendering
    def _camera(self, focal: float) -> CameraConfig:
        S = self.config.image_size
        return CameraConfig(
            focal=float(focal), size=S, center=S / 2.0, cam_dist=_CAM_DIST,
            mm_per_unit=_MM_PER_UNIT, near=1.0, far=60.0,
        )  # fmt: skip

    def _make(
        self,
        identity: int,
        condition: int,
        ident: _Identity,
        cond: _Condition,
        rng: np.random.Generator,
        bg_seed: int | None = None,
    ) -> FaceSample:
        from facerecon.data import backgrounds

        cfg, info, model = self.config, self._info, self.model
        S = cfg.image_size
        cam = self._camera(cond.focal)
        dev, dt = model.device, model.dtype
        with torch.no_grad():
            idc = torch.as_tensor(ident.id_coeff, device=dev, dtype=dt)[None]
            exc = torch.as_tensor(cond.exp_coeff, device=dev, dtype=dt)[None]
            verts = model.shape(idc, exc)
            neutral = model.shape(idc, torch.zeros_like(exc))
            albedo0 = model.texture(torch.as_tensor(ident.tex_coeff, device=dev, dtype=dt)[None])
        v_model = verts[0].cpu().numpy().astype(np.float32)
        v_neutral = neutral[0].cpu().numpy().astype(np.float32)
        albedo = self._albedo(albedo0[0].cpu().double().numpy(), v_neutral, ident)
        if self._photo is not None and not self._photo.detail:
            # the texture times the tone and the basis' variation
            base = model.tex_mean.detach().cpu().double().numpy()
            skin = self._photo.skin[ident.texture]
            variation = np.clip(albedo / np.maximum(base * ident.tone, 1e-3), 0.6, 1.6)
            albedo = (variation * (ident.tone * info.ref_skin / skin)).astype(np.float32)

        # Place the face: its centre on the ray through (centre + offset) at the drawn depth.
        R = euler_matrix(cond.angles)
        c_rot = (info.centre_mm / _MM_PER_UNIT) @ R.T
        target = np.array(
            [
                cond.offset_px[0] * cond.depth / cond.focal,
                -cond.offset_px[1] * cond.depth / cond.focal,
                _CAM_DIST - cond.depth,
            ]
        )
        trans = (target - c_rot).astype(np.float32)
        angles = cond.angles.astype(np.float32)

        with torch.no_grad():
            out = render(
                verts,
                torch.as_tensor(albedo, device=dev, dtype=dt)[None],
                model.triangles,
                torch.as_tensor(angles, device=dev, dtype=dt)[None],
                torch.as_tensor(trans, device=dev, dtype=dt)[None],
                torch.as_tensor(cond.gamma, device=dev, dtype=dt)[None],
                cam,
            )
        if self._photo is not None:
            tex = self._photo.pixels(ident.texture, out.fragments, model.triangles)
            out.image = out.image * tex[None].to(out.image)
        face_rgb = out.image[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)
        mask = out.mask[0, 0].cpu().numpy() > 0.5
        face_idx = out.face_idx[0].cpu().numpy()
        bary = out.bary[0].cpu().numpy()
        depth = out.depth[0, 0].cpu().numpy()
        uv = out.uv[0].cpu().numpy().astype(np.float64)

        camera = {
            "focal": float(cam.focal), "size": int(S), "center": float(cam.center),
            "cam_dist": float(cam.cam_dist), "mm_per_unit": float(cam.mm_per_unit),
            "near": float(cam.near), "far": float(cam.far),
        }  # fmt: skip
        v_cam = camera_vertices(v_model, angles, trans, camera)
        lm_idx = info.landmarks
        lm2d = project_camera(v_cam[lm_idx], camera).astype(np.float32)

        # Parse labels: nearest vertex of the visible triangle.
        parse = np.zeros((S, S), np.uint8)
        fi = face_idx[mask]
        corner = bary[mask].argmax(-1)
        parse[mask] = info.parse_labels[info.triangles[fi, corner]]
        tri_uv = uv[info.triangles]  # (F, 3, 2)
        area = (tri_uv[:, 1, 0] - tri_uv[:, 0, 0]) * (tri_uv[:, 2, 1] - tri_uv[:, 0, 1]) - (
            tri_uv[:, 2, 0] - tri_uv[:, 0, 0]
        ) * (tri_uv[:, 1, 1] - tri_uv[:, 0, 1])
        backface = np.zeros((S, S), bool)
        backface[mask] = area[fi] > 0
        face_rgb = np.clip(face_rgb, 0.0, 1.0)
        face_rgb[~mask] = 0.0
        light = np.clip(_irradiance_front(cond.gamma), 0.15, 1.5)
        covered = mask & ~backface
        for loop, region in info.holes:
            poly = np.round(uv[loop] * 4).astype(np.int32)  # 2 fractional bits
            hole = np.zeros((S, S), np.uint8)
            cv2.fillPoly(hole, [poly], 1, lineType=cv2.LINE_8, shift=2)
            inside = hole.astype(bool) & ~covered
            if not inside.any():
                continue
            parse[inside] = region
            face_rgb[inside] = self._hole_colour(inside, uv[loop], region, ident, light)
            covered |= inside
        # Self-occlusion of landmarks: visible when nothing of the face lies in front.
        lm_depth = -v_cam[lm_idx, 2].astype(np.float64) / _MM_PER_UNIT
        px = np.round(lm2d).astype(np.int64)
        inside_img = (px[:, 0] >= 0) & (px[:, 0] < S) & (px[:, 1] >= 0) & (px[:, 1] < S)
        vis = inside_img.copy()
        pxc = np.clip(px, 0, S - 1)
        zbuf = depth[pxc[:, 1], pxc[:, 0]]
        hit = mask[pxc[:, 1], pxc[:, 0]]
        vis &= ~hit | (lm_depth <= zbuf + 0.08)  # 8 mm tolerance

        # Photo: background, soft-edged composite, then realism.
        bg_rng = np.random.default_rng(bg_seed) if bg_seed is not None else rng
        background = backgrounds.make_background(bg_rng, S, cfg.background)
        if cfg.background != "flat":
            background = self._head_backdrop(
                bg_rng, background, ident, angles, trans, camera, light
            )
        alpha = cv2.GaussianBlur(covered.astype(np.float32), (0, 0), 0.6)
        alpha = np.maximum(alpha, covered * 0.5)[..., None]
        soft_face = np.where(covered[..., None], face_rgb, background)
        photo = background * (1 - alpha) + soft_face * alpha
        occ = np.zeros((S, S), bool)
        if not cfg.clean:
            photo, occ = self._realism(photo, rng, lm2d, covered, ident)
        image = np.clip(np.round(photo * 255.0), 0, 255).astype(np.uint8)
        coeffs = {
            "id_coeff": ident.id_coeff.copy(),
            "exp_coeff": cond.exp_coeff.copy(),
            "tex_coeff": ident.tex_coeff.copy(),
            "angles": angles,
            "gamma": cond.gamma.astype(np.float32),
            "trans": trans,
        }
        return FaceSample(
            image=image,
            vertices_model=v_model,
            vertices_neutral=v_neutral,
            vertices_camera=v_cam,
            triangles=info.triangles.copy(),
            lm68=lm2d,
            lm68_3d=v_model[lm_idx].copy(),
            landmark_indices=lm_idx.copy(),
            nose_index=int(lm_idx[30]),
            parse=parse,
            occluder_mask=occ,
            coeffs=coeffs,
            camera=camera,
            identity=int(identity),
            condition=int(condition),
            seed=self.seed,
            model_name=info.name,
            landmark_visible=vis,
        )

    def _head_backdrop(
        self,
        rng: np.random.Generator,
        background: np.ndarray,
        ident: _Identity,
        angles: np.ndarray,
        trans: np.ndarray,
        camera: dict,
        light: np.ndarray,
    ) -> np.ndarray:
        """Draw a head proxy behind the face mesh: a skull disc (hair or skin) and a neck.

        Skull: a sphere of radius 0.55 x face width centred 70 mm behind and 30 mm above the
        face centre; neck (drawn over it): a cylinder (radius 0.3 x width) from 60 mm below and
        45 mm behind the centre downwards; both projected with the sample's pose and camera
        (perspective ignored inside the shapes). They are background in ``parse`` (label 0).
        """
        from facerecon.data.backgrounds import value_noise

        info, S = self._info, background.shape[0]
        w = info.width_mm
        pts = info.centre_mm + np.array([[0, 30, -70], [0, -60, -45], [0, -300, -60]], np.float64)
        cam = camera_vertices(pts, angles, trans, camera).astype(np.float64)
        uv = project_camera(cam, camera)
        scale = camera["focal"] / -cam[:, 2]
        img = background.copy()
        one = 1 << 3
        skin = np.clip(ident.tone * info.ref_skin * light * rng.uniform(0.6, 0.85), 0, 1)
        skull = np.zeros((S, S), np.float32)
        r = max(1, round(0.55 * w * float(scale[0]) * one))
        cv2.circle(skull, tuple(round(c * one) for c in uv[0]), r, 1.0, -1, cv2.LINE_AA, 3)
        bald = rng.random() < 0.12
        base = skin if bald else np.clip(ident.hair_colour * light, 0, 1)
        tex = value_noise(rng, S, 5)[..., None]
        colour = base * (0.7 + 0.5 * tex) if not bald else base * (0.9 + 0.15 * tex)
        img = img * (1 - skull[..., None]) + colour * skull[..., None]
        neck = np.zeros((S, S), np.float32)
        thick = max(1, round(2 * 0.3 * w * float(scale[1])))
        p0, p1 = (tuple(round(c * one) for c in uv[k]) for k in (1, 2))
        cv2.line(neck, p0, p1, 1.0, thick, cv2.LINE_AA, 3)
        shade = 0.8 + 0.3 * value_noise(rng, S, 2)[..., None]
        return np.clip(img * (1 - neck[..., None]) + skin * shade * neck[..., None], 0, 1)

    def _albedo(self, albedo: np.ndarray, v_neutral: np.ndarray, ident: _Identity) -> np.ndarray:
        """``(N, 3)`` albedo: model albedo x skin tone + smooth per-vertex noise, in 0.02..1."""
        phase = v_neutral.astype(np.float64) @ ident.noise_freq.T + ident.noise_phase  # (N, 6)
        noise = np.sin(phase) @ ident.noise_amp  # (N, 3)
        return np.clip(albedo * ident.tone + noise, 0.02, 1.0).astype(np.float32)

    @staticmethod
    def _hole_colour(
        inside: np.ndarray, loop_uv: np.ndarray, region: int, ident: _Identity, light: np.ndarray
    ) -> np.ndarray:
        """``(K, 3)`` colours of the ``inside`` pixels of a mesh hole (mouth cavity or eyeball)."""
        rows, cols = np.nonzero(inside)
        y0, y1 = loop_uv[:, 1].min(), loop_uv[:, 1].max()
        t = (rows - y0) / max(y1 - y0, 1.0)
        if region == int(Region.INNER_MOUTH):
            cavity = np.array([0.22, 0.06, 0.06]) * (1.2 - 0.6 * t)[:, None]
            teeth = (t < 0.28)[:, None] & (y1 - y0 > 4)
            col = np.where(teeth, np.array([0.82, 0.78, 0.70]), cavity)
        else:
            cx, cy = loop_uv.mean(0)
            r = np.hypot(cols - cx, rows - cy) / max(0.5 * (y1 - y0), 1.0)
            col = np.where((r < 0.6)[:, None], ident.eye_colour, np.array([0.85, 0.82, 0.78]))
            col = np.where((r < 0.25)[:, None], np.array([0.03, 0.03, 0.03]), col)
        return (col * light).clip(0, 1).astype(np.float32)

    def _realism(
        self,
        photo: np.ndarray,
        rng: np.random.Generator,
        lm2d: np.ndarray,
        face: np.ndarray,
        ident: _Identity,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Occluders, blur, noise, JPEG; returns the photo and the occluder mask ``(S, S)``."""
        from facerecon.data import degrade, occluders

        cfg = self.config
        occ = np.zeros(face.shape, bool)
        if rng.random() < cfg.occluder_prob:
            skin = np.clip(ident.tone * self._info.ref_skin, 0, 1)
            photo, occ = occluders.add_occluders(rng, photo, lm2d, skin_rgb=skin)
        photo = degrade.degrade(
            rng, photo, blur_prob=cfg.blur_prob, noise_prob=cfg.noise_prob, jpeg_prob=cfg.jpeg_prob
        )
        return photo, occ


# ---------------------------------------------------------------------------- shards
_SHARD_GLOB = "shard-*.npz"
# Shard key -> FaceSample field. The keys are the shard file format (shipped shards and users'
# folders must keep loading): ``landmarks2d`` stays the key of ``FaceSample.lm68``.
_PER_SAMPLE = {
    "image": "image",
    "vertices_model": "vertices_model",
    "landmarks2d": "lm68",
    "parse": "parse",
    "occluder_mask": "occluder_mask",
    "landmark_visible": "landmark_visible",
}
_COEFF_KEYS = ("id_coeff", "exp_coeff", "tex_coeff", "angles", "gamma", "trans")


def _write_shard(path: Path, samples: list[FaceSample]) -> None:
    """One ``.npz``: per-sample arrays stacked, identity-only meshes once per identity."""
    first = samples[0]
    ids = sorted({s.identity for s in samples})
    id_row = {i: k for k, i in enumerate(ids)}
    neutral = {s.identity: s.vertices_neutral for s in samples}
    arrays: dict[str, np.ndarray] = {
        key: np.stack([getattr(s, name) for s in samples]) for key, name in _PER_SAMPLE.items()
    }
    for k in _COEFF_KEYS:
        arrays[f"coeff_{k}"] = np.stack([s.coeffs[k] for s in samples])
    arrays["neutral_table"] = np.stack([neutral[i] for i in ids])
    arrays["neutral_row"] = np.array([id_row[s.identity] for s in samples], np.int64)
    arrays["identity"] = np.array([s.identity for s in samples], np.int64)
    arrays["condition"] = np.array([s.condition for s in samples], np.int64)
    arrays["triangles"] = first.triangles
    arrays["landmark_indices"] = first.landmark_indices
    meta = {
        "seed": first.seed,
        "model_name": first.model_name,
        "nose_index": first.nose_index,
        "cameras": [s.camera for s in samples],
    }
    arrays["meta"] = np.array(json.dumps(meta))
    atomic_savez(path, arrays, compressed=True)


def write_shards(
    out_dir,
    faces: SyntheticFaces,
    n_identities: int,
    m_per_identity: int,
    shard_size: int = 1000,
) -> Path:
    """Write ``n_identities x m_per_identity`` samples as compressed ``.npz`` shards + a card.

    Layout of ``out_dir``: ``shard-00000.npz, shard-00001.npz, ...`` (each at most ``shard_size``
    samples, identity-major order, conditions ``0 .. m-1``), ``index.json`` (counts, config) and
    ``README.md`` (the dataset card). Each shard stores the per-sample arrays stacked
    (``image``, ``vertices_model``, ``landmarks2d`` (the key of ``FaceSample.lm68``), ``parse``,
    ``occluder_mask``, ``landmark_visible``, ``coeff_<name>``, ``identity``, ``condition``), the
    identity meshes
    once (``neutral_table`` + ``neutral_row``), the topology once and a JSON ``meta`` (seed,
    model, cameras). ``vertices_camera`` is recomputed on reading (bit-identical: the same float64
    function of ``vertices_model``, angles, trans and camera).

    Returns:
        ``out_dir`` as a :class:`Path`.
    """
    if n_identities < 1 or m_per_identity < 1 or shard_size < 1:
        raise SynthError("write_shards needs n_identities, m_per_identity and shard_size >= 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(_SHARD_GLOB):
        old.unlink()
    buf: list[FaceSample] = []
    n_shards = n_samples = 0
    for i in range(int(n_identities)):
        for c in range(int(m_per_identity)):
            buf.append(faces.sample(i, c))
            if len(buf) == shard_size:
                _write_shard(out / f"shard-{n_shards:05d}.npz", buf)
                n_shards, n_samples, buf = n_shards + 1, n_samples + len(buf), []
    if buf:
        _write_shard(out / f"shard-{n_shards:05d}.npz", buf)
        n_shards, n_samples = n_shards + 1, n_samples + len(buf)
    index = {
        "generator_version": GENERATOR_VERSION,
        "model": faces._info.name,
        "seed": faces.seed,
        "config": asdict(faces.config),
        "n_identities": int(n_identities),
        "m_per_identity": int(m_per_identity),
        "n_samples": n_samples,
        "n_shards": n_shards,
        "shard_size": int(shard_size),
        "n_vertices": int(faces.model.n_vertices),
    }
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    (out / "README.md").write_text(_dataset_card(index))
    return out


def _dataset_card(index: dict) -> str:
    model = index["model"]
    if model.startswith("bfm"):
        licence = (
            f"Geometry from `{model}` derives from the Basel Face Model 2009 (University of Basel):"
            " research and non-commercial use only, under the BFM licence; do not redistribute"
            " the meshes outside those terms."
        )
    elif model == "ict":
        licence = (
            "Geometry from ICT-FaceKit (USC Institute for Creative Technologies), MIT licence."
        )
    else:
        licence = f"Geometry from the face model `{model}`: follow that model's licence."
    cfg = "\n".join(f"| `{k}` | `{v}` |" for k, v in index["config"].items())
    return f"""# Synthetic faces ({index["generator_version"]})

Rendered face photos with exact 3D ground truth, made by `facerecon.data.synthetic`
(`write_shards`). Read them back with `facerecon.data.synthetic.read_shards(<this folder>)`.

| field | value |
|---|---|
| generator version | `{index["generator_version"]}` |
| face model | `{model}` ({index["n_vertices"]} vertices) |
| seed | {index["seed"]} |
| identities x conditions | {index["n_identities"]} x {index["m_per_identity"]} |
| samples | {index["n_samples"]} in {index["n_shards"]} shard(s) of at most {index["shard_size"]} |

## Config
| key | value |
|---|---|
{cfg}

## Format
`shard-NNNNN.npz` (NumPy compressed): stacked per-sample arrays `image (n,S,S,3) uint8`,
`vertices_model (n,N,3)` mm, `landmarks2d (n,68,2)` px, `parse (n,S,S)` Region labels,
`occluder_mask (n,S,S)`, `landmark_visible (n,68)`,
`coeff_<id_coeff|exp_coeff|tex_coeff|angles|gamma|trans>`,
`identity`, `condition`; `neutral_table (k,N,3)` + `neutral_row (n,)` (identity-only meshes);
`triangles`, `landmark_indices`; `meta` (JSON: seed, model, nose index, per-sample cameras).
Sample `(identity, condition)` is exactly `SyntheticFaces(model, config, seed).sample(identity,
condition)` of the same generator version.

## Licences
- {licence}
- Backgrounds: procedural, OpenCV-drawn scenes and crops of `astronaut.jpg` (NASA, public domain).
- Skin tones: 16 k-means colours of the UCI Skin Segmentation data (Bhatt and Dhall).
- Synthetic: no real person is depicted.
"""


def read_shards(path) -> Iterator[FaceSample]:
    """Yield the :class:`FaceSample` objects of a shard folder (or one shard file) in order."""
    p = Path(path)
    files = sorted(p.glob(_SHARD_GLOB)) if p.is_dir() else [p]
    if not files or not all(f.is_file() for f in files):
        raise SynthError(f"no synthetic shards found at {p}")
    for f in files:
        try:
            data = dict(np.load(f, allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise SynthError(f"cannot read shard {f}: {exc}") from None
        meta = json.loads(str(data["meta"]))
        tri, lm = data["triangles"], data["landmark_indices"]
        for k in range(len(data["identity"])):
            coeffs = {c: data[f"coeff_{c}"][k] for c in _COEFF_KEYS}
            camera = meta["cameras"][k]
            v_model = data["vertices_model"][k]
            yield FaceSample(
                image=data["image"][k],
                vertices_model=v_model,
                vertices_neutral=data["neutral_table"][data["neutral_row"][k]],
                vertices_camera=camera_vertices(v_model, coeffs["angles"], coeffs["trans"], camera),
                triangles=tri,
                lm68=data["landmarks2d"][k],
                lm68_3d=v_model[lm],
                landmark_indices=lm,
                nose_index=int(meta["nose_index"]),
                parse=data["parse"][k],
                occluder_mask=data["occluder_mask"][k],
                coeffs=coeffs,
                camera=camera,
                identity=int(data["identity"][k]),
                condition=int(data["condition"][k]),
                seed=int(meta["seed"]),
                model_name=str(meta["model_name"]),
                landmark_visible=data["landmark_visible"][k],
            )

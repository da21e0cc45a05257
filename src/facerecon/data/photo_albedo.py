"""Photo albedo for the synthetic engine: real skin, eyes, brows and lips from photo textures.

The textures (``scripts/make_photo_textures.py``; two public-domain ones ship in
``facerecon/data/textures``) live in bfm-lite's UV chart (:func:`facerecon.texture.chart_uv`).
Any face model is mapped into that chart once: its mean shape is aligned to bfm-lite's by a
similarity on the 68 landmark vertices, and each vertex takes the chart UV of the nearest
bfm-lite vertex (bfm-lite itself: its own chart). A render then samples the texture per pixel
(bilinear, through the interpolated UV) and multiplies it with the shaded per-vertex
modulation the engine passes as albedo (skin tone and smooth variation), so the image is
``texture(uv) x tone x SH irradiance``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

from facerecon.errors import FaceReconError
from facerecon.geometry import umeyama

__all__ = ["DETAIL_SIGMA", "TEXTURE_DIR", "PhotoAlbedo", "detail_ratio", "model_chart_uv"]

TEXTURE_DIR = Path(__file__).with_name("textures")
#: blur of :func:`detail_ratio` as a fraction of the chart's side (12 texels at 512: about
#: 5 mm on bfm-lite's face, narrower than a nose, wider than a brow's edge)
DETAIL_SIGMA = 12 / 512


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def detail_ratio(rgb: np.ndarray, sigma: float, lo: float = 0.35, hi: float = 1.8) -> np.ndarray:
    """``(H, W, 3)`` ratio of a texture ``rgb (H, W, 3)`` in 0..1 to its Gaussian blur of
    standard deviation ``sigma`` texels, clipped to ``[lo, hi]``: the luminance ratio times a
    mild colour ratio (each channel's ratio over the luminance's, clipped to 0.7..1.4: red
    lips and dark irises stay, the source photo's overall colour cast does not)."""
    lum = rgb @ _LUMA
    ratio = np.clip(lum / np.maximum(cv2.GaussianBlur(lum, (0, 0), sigma), 1e-3), lo, hi)
    col = rgb / np.maximum(cv2.GaussianBlur(rgb, (0, 0), sigma), 1e-3)
    col = col / np.maximum(col @ _LUMA, 1e-3)[..., None]
    return np.clip(ratio[..., None] * np.clip(col, 0.7, 1.4), lo, hi).astype(np.float32)


@lru_cache(maxsize=4)
def _reference() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """bfm-lite's mean shape, landmark vertices and chart UV."""
    from facerecon.morphable import load_face_model
    from facerecon.texture import chart_uv

    ref = load_face_model("bfm-lite")
    mean = ref.mean_shape.double().numpy()
    return mean, ref.landmarks68.numpy(), chart_uv(mean, ref.triangles.numpy())


def model_chart_uv(mean_shape: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
    """``(N, 2)`` bfm-lite chart UV for the vertices ``(N, 3)`` mm of any face model
    (module docstring); ``landmarks68 (68,)`` its landmark vertex indices."""
    from scipy.spatial import cKDTree

    ref, ref_lm, ref_uv = _reference()
    v = np.asarray(mean_shape, np.float64)
    if v.shape == ref.shape and np.allclose(v, ref, atol=1e-3):
        return ref_uv.copy()
    inner = np.arange(17, 68)  # the jaw contour points are defined differently per model
    sim = umeyama(v[landmarks68[inner]], ref[ref_lm[inner]])
    _, nearest = cKDTree(ref).query(sim.apply(v))
    return ref_uv[nearest]


class PhotoAlbedo:
    """Photo textures for one face model (loaded once).

    Args:
        mean_shape: ``(N, 3)`` the model's mean shape (mm); landmarks68 ``(68,)``.
        folder: textures (``*.jpg`` / ``*.png``); default :data:`TEXTURE_DIR`.
        detail: keep only each texture's detail, its ratio to a Gaussian blur of itself
            (:func:`detail_ratio`), a modulation about 1 of the model's own albedo: the
            source photo's skin colour and the shading baked in at the scale of the face's
            relief (the source person's nose, cheeks and eye sockets under their light) go;
            eyes, brows, lips, wrinkles and pores stay.
        detail_sigma: the blur's standard deviation as a fraction of the texture's side.
    """

    def __init__(
        self,
        mean_shape: np.ndarray,
        landmarks68: np.ndarray,
        folder: str | Path | None = None,
        detail: bool = False,
        detail_sigma: float = DETAIL_SIGMA,
    ):
        self.detail = bool(detail)
        folder = Path(folder) if folder is not None else TEXTURE_DIR
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".png"))
        if not files:
            raise FaceReconError(f"no photo textures (*.jpg, *.png) in {folder}")
        self.names = [p.stem for p in files]
        self.textures = []
        for p in files:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise FaceReconError(f"cannot read photo texture {p}")
            rgb = img[..., ::-1].astype(np.float32) / 255.0
            if self.detail:
                rgb = detail_ratio(rgb, detail_sigma * rgb.shape[1])
            self.textures.append(torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None])
        self.skin = [self._skin_colour(t) for t in self.textures]  # ~1 with detail
        self.uv = torch.from_numpy(model_chart_uv(mean_shape, landmarks68)).float()

    @staticmethod
    def _skin_colour(texture: torch.Tensor) -> np.ndarray:
        """``(3,)`` median colour of the texture's central (cheek / nose) region."""
        T = texture.shape[-1]
        c = texture[0, :, int(0.45 * T) : int(0.7 * T), int(0.3 * T) : int(0.7 * T)]
        return c.reshape(3, -1).median(dim=1).values.double().numpy()

    def __len__(self) -> int:
        return len(self.textures)

    def pixels(self, index: int, fragments, triangles: torch.Tensor) -> torch.Tensor:
        """``(3, H, W)`` texture colours at the rendered pixels of ``fragments`` (0 on
        background)."""
        from facerecon.render import interpolate
        from facerecon.texture import sample_texture

        uvp = interpolate(self.uv[None].to(fragments.bary.dtype), fragments, triangles)
        col = sample_texture(self.textures[index].to(uvp.dtype), uvp)[0]
        return col * (fragments.face_idx[0] >= 0).to(col.dtype)

"""Photo degradations for synthetic faces: blur, sensor noise, JPEG re-encoding.

Pure functions of a seeded :class:`numpy.random.Generator` and a ``(H, W, 3)`` float32 RGB image
in 0..1; they return a new image of the same shape.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["add_noise", "blur", "degrade", "jpeg"]


def blur(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Gaussian defocus (sigma U(0.5, 1.8) px) or linear motion blur (length 3..9 px)."""
    if rng.random() < 0.6:
        return cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.8))
    n = int(rng.integers(3, 10))
    kernel = np.zeros((n, n), np.float32)
    kernel[n // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), rng.uniform(0, 180), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (n, n))
    kernel /= max(kernel.sum(), 1e-6)
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)


def add_noise(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Signal-dependent Gaussian noise: ``sigma^2 = a + b * I`` with ``sqrt(a)`` U(1, 6)/255 and
    ``b`` U(0, 0.01); grey or per-channel."""
    a = (rng.uniform(1.0, 6.0) / 255.0) ** 2
    b = rng.uniform(0.0, 0.01)
    sigma = np.sqrt(a + b * np.clip(image, 0, 1))
    shape = image.shape if rng.random() < 0.7 else (*image.shape[:2], 1)
    noise = rng.standard_normal(shape).astype(np.float32)
    return np.clip(image + sigma * noise, 0, 1).astype(np.float32)


def jpeg(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """JPEG re-encoding at quality U{25..95} (OpenCV, 4:2:0 chroma)."""
    q = int(rng.integers(25, 96))
    u8 = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q]
    )
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
        return image
    dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return cv2.cvtColor(dec, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def degrade(
    rng: np.random.Generator,
    image: np.ndarray,
    blur_prob: float = 0.2,
    noise_prob: float = 0.3,
    jpeg_prob: float = 0.5,
) -> np.ndarray:
    """Blur, then noise, then JPEG, each with its probability (the draws are always made, so
    changing one probability does not shift the others' random streams)."""
    u = rng.random(3)
    if u[0] < blur_prob:
        image = blur(rng, image)
    if u[1] < noise_prob:
        image = add_noise(rng, image)
    if u[2] < jpeg_prob:
        image = jpeg(rng, image)
    return image.astype(np.float32)

"""Robust photo loading: every readable photo becomes an ``(H, W, 3)`` uint8 RGB array.

Handled: EXIF orientation, grayscale (``1``, ``L``, ``LA``, ``I;16``, ``I``, ``F``), palette
(``P``, ``PA``), RGBA (alpha composited on **white**), 16-bit PNG/TIFF (rounded ``v / 257``, not
truncated to the high byte), CMYK and YCbCr. Missing, corrupt, truncated or non-image files,
images smaller than ``min_side`` and decompression bombs raise
:class:`facerecon.errors.ImageError` with a one-line message naming the file.

:func:`load_image` keeps full resolution; :func:`load_image_bounded` decodes a very large photo
at a bounded working size (JPEG: decoded at 1/2, 1/4 or 1/8 scale in the DCT domain, never at
full size; other formats: decoded, then reduced) and says how its pixels map to the original's,
so a pipeline's memory does not grow with the photo.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facerecon.errors import ImageError

MIN_SIDE = 32
# Twice Pillow's default bomb threshold: about 179 megapixels (e.g. 13,400 x 13,400).
MAX_PIXELS = 2 * 89_478_485

__all__ = [
    "MAX_PIXELS",
    "MIN_SIDE",
    "LoadedImage",
    "load_image",
    "load_image_bounded",
    "to_rgb_uint8",
]


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """``(H, W, 4)`` uint8 with straight alpha -> ``(H, W, 3)`` uint8 over a white background."""
    rgb = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgb * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale an integer or float array of any bit depth to uint8 (rounded, not truncated).

    uint16 / 16-bit values in ``0..65535`` map by ``v / 257`` (so 65535 -> 255); floats in
    ``0..1`` map by ``v * 255``; other floats and wider integers are clipped to ``0..255``
    unless their maximum exceeds 255, in which case they are treated as 16-bit.
    """
    if arr.dtype == np.uint8:
        return arr
    a = arr.astype(np.float64)
    if arr.dtype == np.uint16:
        a = a / 257.0
    elif np.issubdtype(arr.dtype, np.floating):
        finite = a[np.isfinite(a)]
        peak = float(finite.max()) if finite.size else 0.0
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        if peak <= 1.0:
            a = a * 255.0
        elif peak > 255.0:
            a = a / 257.0
    elif float(a.max(initial=0)) > 255.0:  # 32-bit integer holding 16-bit data
        a = a / 257.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Coerce an in-memory array to ``(H, W, 3)`` uint8 RGB.

    Args:
        image: ``(H, W)`` gray, ``(H, W, 1)``, ``(H, W, 2)`` gray+alpha, ``(H, W, 3)`` RGB or
            ``(H, W, 4)`` RGBA; uint8, uint16 or float (``0..1``).

    Returns:
        ``(H, W, 3)`` uint8 RGB; alpha is composited on white.
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {arr.shape}")
    arr = _scale_to_uint8(arr)
    c = arr.shape[2]
    if c == 1:
        return np.ascontiguousarray(np.repeat(arr, 3, axis=2))
    if c == 2:
        arr = np.concatenate([np.repeat(arr[..., :1], 3, axis=2), arr[..., 1:]], axis=2)
        c = 4
    if c == 4:
        return _composite_on_white(arr)
    return np.ascontiguousarray(arr)


def _is_16bit_color(im: Image.Image) -> bool:
    """True when Pillow would truncate 16-bit colour samples to their high byte."""
    if im.mode not in ("RGB", "RGBA") or im.format not in ("PNG", "TIFF"):
        return False
    for tile in getattr(im, "tile", None) or []:
        args = tile[3] if len(tile) > 3 else None
        raw = args[0] if isinstance(args, tuple) and args else args
        if isinstance(raw, str) and "16" in raw:
            return True
    return False


def _read_16bit_color(path: Path, orientation: int | None) -> np.ndarray | None:
    """Decode 16-bit colour PNG/TIFF with OpenCV; ``None`` if OpenCV cannot."""
    data = np.fromfile(path, dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3:
        return None
    arr = arr[..., [2, 1, 0, 3]] if arr.shape[2] == 4 else arr[..., ::-1]
    # Apply the EXIF orientation Pillow would have applied (1 = none).
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1],
    }
    if orientation in ops:
        arr = ops[orientation](arr)
    return to_rgb_uint8(np.ascontiguousarray(arr))


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    """Pillow image of any mode -> ``(H, W, 3)`` uint8 RGB (alpha composited on white)."""
    mode = im.mode
    if mode in ("P", "PA"):
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        if mode in ("La", "RGBa"):  # premultiplied alpha
            im = im.convert("RGBA" if mode == "RGBa" else "LA")
        if im.mode == "LA":
            return to_rgb_uint8(np.asarray(im))
        return to_rgb_uint8(np.asarray(im.convert("RGBA")))
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im)
        if mode.startswith("I;16"):
            arr = arr.astype(np.uint16)
        return to_rgb_uint8(arr)
    if mode == "RGB":
        return np.ascontiguousarray(np.asarray(im))
    # "1", "L", "CMYK", "YCbCr", "LAB", "HSV", ...: Pillow's conversion is adequate.
    return np.ascontiguousarray(np.asarray(im.convert("RGB")))


@dataclass
class LoadedImage:
    """A photo decoded at a working size.

    Attributes:
        image: ``(h, w, 3)`` uint8 RGB, upright.
        original_size: ``(H, W)`` of the photo itself (upright).
        scale: ``(sx, sy)`` = ``(w / W, h / H)``: a photo pixel ``x`` is at
            ``(x + 0.5) * sx - 0.5`` in ``image`` (1, 1 when decoded at full size).
    """

    image: np.ndarray
    original_size: tuple[int, int]
    scale: tuple[float, float] = (1.0, 1.0)

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """``(..., 2)`` pixels of :attr:`image` -> pixels of the photo."""
        s = np.asarray(self.scale, np.float64)
        return (np.asarray(points, np.float64) + 0.5) / s - 0.5


def load_image_bounded(
    path: str | os.PathLike,
    max_side: int,
    *,
    min_side: int = MIN_SIDE,
    max_pixels: int = MAX_PIXELS,
) -> LoadedImage:
    """:func:`load_image`, but a photo whose longer side exceeds ``max_side`` is decoded at
    (about) ``max_side``: a JPEG by Pillow's draft mode (the decoder's own 1/2, 1/4 or 1/8
    scaling, so the full-size image is never in memory), then by area interpolation to
    exactly fit; other formats decoded and then reduced. Peak memory of a 100 MP JPEG: the
    working image only (~40 MB at 4096 px), against ~300 MB decoded.

    Returns:
        :class:`LoadedImage` (``scale`` maps photo pixels to working pixels).
    """
    p = Path(path)
    if p.is_file():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(p) as im:
                    size = im.size
                    transposed = im.getexif().get(0x0112) in (5, 6, 7, 8)
                    small_enough = size[0] * size[1] <= max_pixels  # else load_image refuses
                    if max(size) > max_side and small_enough:
                        if im.format == "JPEG":
                            return _load_jpeg_draft(p, im, max_side, transposed, min_side)
                        if im.mode in REDUCIBLE and not _is_16bit_color(im):
                            return _load_reduced(p, im, max_side, transposed, min_side)
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
            pass  # load_image says what is wrong, in its words
    rgb = load_image(p, min_side=min_side, max_pixels=max_pixels)
    h, w = rgb.shape[:2]
    return _fit(rgb, (h, w), max_side)


def _fit(rgb: np.ndarray, original: tuple[int, int], max_side: int) -> LoadedImage:
    """``rgb`` (a decoding of a photo of size ``original``) reduced to fit ``max_side``."""
    h, w = rgb.shape[:2]
    if max(h, w) > max_side:
        f = max_side / max(h, w)
        size = (max(1, round(w * f)), max(1, round(h * f)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        h, w = rgb.shape[:2]
    H, W = original
    return LoadedImage(rgb, (H, W), (w / W, h / H))


#: modes Pillow's ``Image.reduce`` box-filters as they are (others take load_image's path)
REDUCIBLE = ("L", "LA", "RGB", "RGBA", "I", "F")


def _load_reduced(
    p: Path, im: Image.Image, max_side: int, transposed: bool, min_side: int
) -> LoadedImage:
    """A large non-JPEG photo: decoded, then box-reduced by an integer factor inside Pillow
    (no full-size numpy copies), then fitted exactly."""
    W0, H0 = im.size
    k = max(1, max(W0, H0) // max_side)
    try:
        im.load()
        small = im.reduce(k) if k > 1 else im
        small.info = im.info
        small = ImageOps.exif_transpose(small)
        rgb = _pil_to_rgb(small)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"cannot read image {p}: {reason}") from e
    original = (W0, H0) if transposed else (H0, W0)
    _check_size(rgb, p, min_side)
    return _fit(rgb, original, max_side)


def _load_jpeg_draft(
    p: Path, im: Image.Image, max_side: int, transposed: bool, min_side: int
) -> LoadedImage:
    W0, H0 = im.size  # as stored (before the EXIF turn)
    k = 1
    while k < 8 and max(W0, H0) / (2 * k) >= max_side:
        k *= 2
    im.draft("RGB", (max(1, W0 // k), max(1, H0 // k)))
    try:
        im.load()
        im = ImageOps.exif_transpose(im)
        rgb = _pil_to_rgb(im)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"cannot read image {p}: {reason}") from e
    original = (W0, H0) if transposed else (H0, W0)  # (H, W) upright
    _check_size(rgb, p, min_side)
    return _fit(rgb, original, max_side)


def load_image(
    path: str | os.PathLike,
    *,
    min_side: int = MIN_SIDE,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Read a photo as ``(H, W, 3)`` uint8 RGB, upright according to its EXIF orientation.

    Args:
        path: image file (anything Pillow reads: JPEG, PNG, TIFF, PPM/PGM, BMP, WebP, GIF...).
        min_side: smaller images raise ImageError (a face needs at least a few dozen pixels).
        max_pixels: larger images raise ImageError (decompression-bomb guard).

    Returns:
        ``(H, W, 3)`` uint8 RGB. RGBA and palette transparency are composited on white.

    Raises:
        ImageError: missing path, directory, unreadable/corrupt/truncated file, too small,
            or too many pixels. The message is one line and names the file.
    """
    p = Path(path)
    if not p.exists():
        raise ImageError(f"image file not found: {p}")
    if not p.is_file():
        raise ImageError(f"not a file: {p}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageError(
                        f"image too large: {p} is {w}x{h} ({w * h / 1e6:.0f} MP > "
                        f"{max_pixels / 1e6:.0f} MP limit)"
                    )
                # Check the raw sample format before getexif(): reading EXIF may decode a PNG.
                sixteen = _is_16bit_color(im)
                orientation = im.getexif().get(0x0112)
                if sixteen:
                    rgb = _read_16bit_color(p, orientation)
                    if rgb is not None:
                        return _check_size(rgb, p, min_side)
                im.load()
                im = ImageOps.exif_transpose(im)
                rgb = _pil_to_rgb(im)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"image too large (decompression bomb guard): {p}") from e
    except UnidentifiedImageError as e:
        raise ImageError(f"not an image or unsupported format: {p}") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"cannot read image {p}: {reason}") from e
    return _check_size(rgb, p, min_side)


def _check_size(rgb: np.ndarray, path: Path, min_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if min(h, w) < min_side:
        raise ImageError(f"image too small: {path} is {w}x{h}, need at least {min_side} px a side")
    return rgb

"""Torch datasets of aligned 224 crops + 68 landmarks for R-Net training.

Every dataset returns dicts ``{"image": (3, S, S) float32 0..1, "lm68": (68, 2) float32 crop
pixels, "attention": (1, S, S) float32 (only when known), "index": int}``; prepared synthetic
items add ``"lm_depth": (68,)`` (landmark depth in crop pixels, the 3D-landmark label) and
``"angles": (3,)`` (the true rotation, before augmentation). Augmentation (see
``facerecon.data.augment``) is drawn from ``numpy.random.default_rng([seed, epoch, index])``:
a sample's augmentation depends only on (seed, epoch, index), never on worker scheduling, so a
resumed run sees exactly the batches of an uninterrupted one. Call :meth:`set_epoch` per epoch.

* :class:`AlignedFaceDataset`: in-memory arrays (tests, small sets, rendered faces).
* :class:`PreparedFaceDataset`: a folder written by ``facerecon prepare``.
* :class:`SyntheticFaceDataset`: the synthetic face engine (``facerecon.data.synthetic``),
  aligned with ``facerecon.detect.align``.
* :func:`rendered_faces`: random-coefficient renders of a face model (no engine needed).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from facerecon.data.augment import AugmentConfig, augment_sample_depth
from facerecon.errors import FaceReconError

__all__ = [
    "AlignedFaceDataset",
    "PreparedFaceDataset",
    "SyntheticFaceDataset",
    "rendered_faces",
]


class _AugmentedFaces(Dataset):
    """Base: ``_load(i) -> (image uint8 (S,S,3), lm68 (68,2), attention (S,S) | None)``."""

    def __init__(self, augment: AugmentConfig | None = None, seed: int = 0) -> None:
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draw of this epoch."""
        self.epoch = int(epoch)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def _truth(self, index: int) -> dict[str, np.ndarray]:
        """Ground truth stored with item ``index`` (``lm_depth``, ``angles``); none here."""
        return {}

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, lm, att = self._load(index)
        truth = self._truth(index)
        depth = truth.get("lm_depth")
        lm = np.asarray(lm, np.float64)
        if att is not None:
            att = np.asarray(att, np.float32)
        if self.augment is not None and self.augment.enabled:
            rng = np.random.default_rng([self.seed, self.epoch, int(index)])
            image, lm, att, depth = augment_sample_depth(image, lm, depth, rng, self.augment, att)
        out: dict[str, Any] = {
            "image": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255,
            "lm68": torch.from_numpy(np.asarray(lm, np.float32)),
            "index": int(index),
        }
        if att is not None:
            out["attention"] = torch.from_numpy(np.ascontiguousarray(att, np.float32))[None]
        if depth is not None:
            out["lm_depth"] = torch.from_numpy(np.asarray(depth, np.float32))
        if "angles" in truth:
            out["angles"] = torch.from_numpy(np.asarray(truth["angles"], np.float32))
        return out


class AlignedFaceDataset(_AugmentedFaces):
    """Aligned crops held in memory.

    Args:
        images: ``(N, S, S, 3)`` uint8 RGB crops.
        lm68: ``(N, 68, 2)`` landmarks in crop pixels.
        attention: ``(N, S, S)`` skin attention or None (computed by the trainer).
        augment: augmentation, None for none.
        seed: augmentation seed.
        persons: ``(N,)`` person labels (for person-level splits), default one per image.
    """

    def __init__(
        self,
        images: np.ndarray,
        lm68: np.ndarray,
        attention: np.ndarray | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        persons: Sequence[str] | None = None,
    ) -> None:
        super().__init__(augment, seed)
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise FaceReconError(f"images must be (N, S, S, 3) uint8, got {images.shape}")
        lm68 = np.asarray(lm68)
        if lm68.shape != (len(images), 68, 2):
            raise FaceReconError(f"lm68 must be ({len(images)}, 68, 2), got {lm68.shape}")
        self.images, self.lm68 = images, lm68
        self.attention = None if attention is None else np.asarray(attention)
        self.persons = list(persons) if persons is not None else [str(i) for i in range(len(lm68))]

    def __len__(self) -> int:
        return len(self.images)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        att = None if self.attention is None else self.attention[index]
        return self.images[index], self.lm68[index], att

    def subset(self, indices: Sequence[int], augment: AugmentConfig | None) -> AlignedFaceDataset:
        idx = np.asarray(indices, dtype=np.int64)
        return AlignedFaceDataset(
            self.images[idx],
            self.lm68[idx],
            None if self.attention is None else self.attention[idx],
            augment,
            self.seed,
            [self.persons[i] for i in idx],
        )


class PreparedFaceDataset(_AugmentedFaces):
    """Faces stored by ``facerecon prepare`` (``root/<person>/<name>.npz``).

    Args:
        root: the prepared folder.
        augment, seed: as in :class:`AlignedFaceDataset`.
        persons: restrict to these person folders (relative paths; ``"."`` for files at the
            top level); None for all.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        augment: AugmentConfig | None = None,
        seed: int = 0,
        persons: Sequence[str] | None = None,
    ) -> None:
        super().__init__(augment, seed)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FaceReconError(f"prepared data folder not found: {self.root}")
        files = sorted(p for p in self.root.rglob("*.npz") if not p.name.startswith("."))
        if persons is not None:
            keep = set(persons)
            files = [p for p in files if self.person_of(p) in keep]
        if not files:
            raise FaceReconError(f"no prepared faces (*.npz) in {self.root}")
        self.files = files

    def person_of(self, path: Path) -> str:
        return path.parent.relative_to(self.root).as_posix()

    @property
    def persons(self) -> list[str]:
        """Person label of every item (its folder relative to ``root``)."""
        return [self.person_of(p) for p in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        from facerecon.data.prepared import read_item

        item = read_item(self.files[index])
        self._cached = (index, {k: item[k] for k in ("lm_depth", "angles") if k in item})
        return item["image"], item["lm68"], item.get("attention")

    def _truth(self, index: int) -> dict[str, np.ndarray]:
        cached = getattr(self, "_cached", None)
        if cached is not None and cached[0] == index:  # read with the item by _load
            return cached[1]
        from facerecon.data.prepared import read_item

        item = read_item(self.files[index])
        return {k: item[k] for k in ("lm_depth", "angles") if k in item}


def rendered_faces(
    model: Any,
    n: int,
    seed: int = 0,
    size: int = 224,
    pose_scale: float = 0.25,
    background: float = 0.3,
    align_crops: bool = True,
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Render ``n`` random faces of a morphable model in the crop camera and align them.

    Coefficients: id, exp, tex ~ N(0, 0.7²), angles ~ N(0, pose_scale²) rad, small random
    coloured lighting, translation 0. The render is composited over a flat gray
    ``background`` and (``align_crops``) re-aligned with ``facerecon.detect.align`` from its
    projected landmarks; without alignment the crops are the renders themselves, so the
    returned coefficients reproduce them exactly (``size`` must then be the camera's 224).

    Returns:
        crops ``(n, size, size, 3)`` uint8, landmarks ``(n, 68, 2)`` crop pixels, and the
        ground-truth coefficients ``(n, layout.size)``.
    """
    from facerecon.detect import align
    from facerecon.render import CameraConfig, render

    g = torch.Generator().manual_seed(int(seed))
    layout = model.layout
    dt = model.mean_shape.dtype
    coeffs = layout.zeros(n, dtype=dt)
    sl = layout.slices()
    for name in ("id_coeff", "exp_coeff", "tex_coeff"):
        k = sl[name].stop - sl[name].start
        coeffs[:, sl[name]] = 0.7 * torch.randn(n, k, generator=g, dtype=dt)
    coeffs[:, sl["angles"]] = pose_scale * torch.randn(n, 3, generator=g, dtype=dt)
    coeffs[:, sl["gamma"]] = 0.1 * torch.randn(n, 27, generator=g, dtype=dt)
    parts = layout.split(coeffs.to(model.mean_shape.device))
    with torch.no_grad():
        v, a = model(parts["id_coeff"], parts["exp_coeff"], parts["tex_coeff"])
        cam = CameraConfig()
        out = render(v, a, model.triangles, parts["angles"], parts["trans"], parts["gamma"], cam)
    img = out.image.clamp(0, 1) * out.mask + background * (1 - out.mask)
    img = (img.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    lm = out.uv[:, model.landmarks68].cpu().numpy()
    if not align_crops:
        return img, lm.astype(np.float32), coeffs
    crops, lms = [], []
    for i in range(n):
        al = align(img[i], lm[i], size=size, fill=int(background * 255))
        crops.append(al.image)
        lms.append(al.lm68)
    return np.stack(crops), np.stack(lms).astype(np.float32), coeffs


class SyntheticFaceDataset(_AugmentedFaces):
    """Faces drawn lazily from the synthetic engine and aligned with ``facerecon.detect.align``.

    Item ``i`` is ``SyntheticFaces(model, SynthConfig(image_size=...), seed).sample(identity,
    condition)`` with ``identity = first_identity + i // n_conditions`` and
    ``condition = i % n_conditions``; ``persons`` are the identity numbers, so a validation set
    built with another ``first_identity`` shares no identity with training.

    Raises:
        FaceReconError: the synthetic engine is not available in this installation.
    """

    def __init__(
        self,
        model: Any,
        n_identities: int,
        n_conditions: int,
        seed: int = 0,
        image_size: int = 512,
        augment: AugmentConfig | None = None,
        size: int = 224,
        first_identity: int = 0,
    ) -> None:
        super().__init__(augment, seed)
        try:
            from facerecon.data.synthetic import SynthConfig, SyntheticFaces
        except ImportError as exc:
            raise FaceReconError(
                "the synthetic face engine (facerecon.data.synthetic) is not available"
            ) from exc
        self.engine = SyntheticFaces(model, SynthConfig(image_size=image_size), seed)
        self.n_identities, self.n_conditions = int(n_identities), int(n_conditions)
        self.first_identity, self.size = int(first_identity), int(size)

    def __len__(self) -> int:
        return self.n_identities * self.n_conditions

    @property
    def persons(self) -> list[str]:
        return [str(self.first_identity + i // self.n_conditions) for i in range(len(self))]

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        from facerecon.detect import align

        if not 0 <= index < len(self):
            raise IndexError(index)
        ident = self.first_identity + index // self.n_conditions
        sample = self.engine.sample(ident, index % self.n_conditions)
        al = align(np.asarray(sample.image), np.asarray(sample.lm68), size=self.size)
        return al.image, al.lm68, None

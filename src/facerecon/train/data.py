"""Training data of R-Net and C-Net training: datasets from a :class:`TrainConfig`, batches on
the device.

Items and batches follow :mod:`facerecon.data.datasets`: ``{"image": (B, 3, S, S) float32
0..1, "lm68": (B, 68, 2) crop pixels, "attention": (B, 1, S, S) (when stored), "index": (B,)}``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import Dataset

from facerecon.train.config import TrainConfig

__all__ = ["build_datasets", "prepare_batch"]


def build_datasets(cfg: TrainConfig, model: Any) -> tuple[Dataset, Dataset | None]:
    """Training set (augmented) and validation set (not augmented, or None).

    Prepared folders are split by person (the last ``val_fraction`` of the sorted person
    folders) when ``val_data`` is None; synthetic data validates on fresh identities.

    Args:
        cfg: ``data``, ``val_data``, ``val_fraction``, ``augment``, ``seed`` and the
            ``synthetic_*`` fields are read.
        model: face model the synthetic engine renders (unused for prepared folders).

    Returns:
        ``(train, val)``: per-image datasets with ``persons`` and ``set_epoch``.
    """
    from facerecon.data.datasets import PreparedFaceDataset, SyntheticFaceDataset

    def synthetic(n_id: int, first: int, augment) -> SyntheticFaceDataset:
        return SyntheticFaceDataset(
            model,
            n_id,
            cfg.synthetic_conditions,
            cfg.seed,
            cfg.synthetic_image_size,
            augment,
            first_identity=first,
        )

    aug = cfg.augment if cfg.augment.enabled else None
    if cfg.data == "synthetic":
        n_val = math.ceil(cfg.val_fraction * cfg.synthetic_identities) if cfg.val_fraction else 0
        train = synthetic(cfg.synthetic_identities, 0, aug)
        val = synthetic(n_val, cfg.synthetic_identities, None) if n_val else None
    else:
        full = PreparedFaceDataset(cfg.data, None, cfg.seed)
        persons = sorted(set(full.persons))
        n_val = round(cfg.val_fraction * len(persons)) if cfg.val_data is None else 0
        n_val = min(n_val, len(persons) - 1)
        val_p = persons[len(persons) - n_val :] if n_val > 0 else []
        train_p = persons[: len(persons) - n_val]
        train = PreparedFaceDataset(cfg.data, aug, cfg.seed, train_p)
        val = PreparedFaceDataset(cfg.data, None, cfg.seed, val_p) if val_p else None
    if cfg.val_data is not None:
        val = (
            synthetic(max(1, math.ceil(0.05 * cfg.synthetic_identities)), 10**6, None)
            if cfg.val_data == "synthetic"
            else PreparedFaceDataset(cfg.val_data, None, cfg.seed)
        )
    return train, val


def prepare_batch(
    batch: dict[str, Any], device: torch.device, use_skin_attention: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(image (B, 3, S, S), lm68 (B, 68, 2), attention (B, 1, S, S))`` on ``device``.

    The attention is the batch's stored one, else computed from the image with the skin
    classifier; ``use_skin_attention=False`` gives ones (every pixel of the rendered face region
    weighs 1: the Table-1 ablation). It has the image's dtype.
    """
    image = batch["image"].to(device, non_blocking=True)
    lm68 = batch["lm68"].to(device, non_blocking=True)
    att = batch.get("attention")
    if not use_skin_attention:  # every pixel of the rendered face region weighs 1 (ablation)
        att = torch.ones_like(image[:, :1])
    elif att is None:
        from facerecon.skin import skin_attention, skin_probability

        att = skin_attention(skin_probability(image))
    return image, lm68, att.to(device=device, dtype=image.dtype)

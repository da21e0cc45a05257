"""C-Net training (Deng et al. 2019, Sec. 4): label-free, on image sets, with a frozen R-Net.

Each training item is a set of M images of one person. The frozen R-Net gives every image its
coefficients and features; the C-Net turns the features into identity confidences; the
identities are aggregated over the set (:func:`facerecon.aggregate.aggregate_set`, S4 by
default) and every image is re-rendered with the aggregated identity and its own expression,
albedo, pose and lighting. The loss is the hybrid loss of the re-renders with the set-stage
weights (photometric 1.9, landmarks 1.6e-3, perceptual 0.1; :func:`set_stage_loss`): only the
C-Net is updated, so it learns to trust the images whose identity explains the whole set.

The trainer is a step function (:class:`SetStep`) and a net spec (:data:`CNET`) for the
training engine (:mod:`facerecon.train.engine`), so the infrastructure is R-Net training's:
the same config fields and YAML, data sources (``synthetic`` identity sets with mixed poses and
occluders, or prepared folders with one sub-folder per person), seeded data order, metrics CSV,
checkpoints with exact resume and DDP under torchrun. Run layout (``config.out_dir``)::

    config.yaml, metrics.csv, checkpoints/last.pt, checkpoints/step_N.pt
    cnet.pt                final weights (``facerecon.nets.cnet.load_cnet``)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset

from facerecon.aggregate import aggregate_set
from facerecon.errors import FaceReconError
from facerecon.losses import HybridLossConfig
from facerecon.morphable import MorphableModel
from facerecon.nets.cnet import CNet, rnet_outputs, save_cnet
from facerecon.train.cli import (
    TRAIN_FLAGS,
    TrainCommand,
    build_parser,
    config_from_args,
    run_command,
)
from facerecon.train.config import ConfigError, TrainConfig, load_config
from facerecon.train.data import build_datasets
from facerecon.train.engine import NetSpec, RunParts, train
from facerecon.train.objective import HybridStep, rnet_terms

__all__ = [
    "CNET",
    "CNET_COMMAND",
    "CNetTrainConfig",
    "ImageSetDataset",
    "SetStep",
    "build_cnet_parser",
    "cnet_config_from_args",
    "load_cnet_checkpoint",
    "load_cnet_config",
    "main_train_cnet",
    "save_cnet_checkpoint",
    "set_stage_loss",
    "set_terms",
    "train_cnet",
]

TRAIN_STRATEGIES = ("s1", "s2", "s4")  # differentiable in the confidences (S3 is an argmax)


def set_stage_loss() -> HybridLossConfig:
    """Hybrid-loss weights of the set stage: the paper's, with perceptual 0.1 instead of 0.2."""
    return HybridLossConfig(w_photo=1.9, w_landmark=1.6e-3, w_perceptual=0.1)


@dataclass
class CNetTrainConfig(TrainConfig):
    """A :class:`facerecon.train.TrainConfig` plus the set-stage fields.

    ``batch_size`` counts *sets* per process (each of ``set_size`` images). ``backbone``,
    ``width_mult``, ``pretrained`` and ``input_size`` are not used: the R-Net (with its input
    size) comes from ``rnet``.

    Attributes:
        rnet: R-Net weights (``facerecon.nets.rnet.save_rnet`` file); required.
        set_size: images per set (M >= 2). Synthetic data: each identity's
            ``synthetic_conditions`` views are cut into sets of M; prepared folders: each
            person's images (sorted) are cut into sets of M, the remainder is left out.
        strategy: aggregation trained through: ``"s4"`` (paper, element-wise), ``"s2"`` or
            ``"s1"`` (the latter with a one-output C-Net).
        loss: set-stage weights by default (:func:`set_stage_loss`).
    """

    out_dir: str = "runs/cnet"
    batch_size: int = 4
    rnet: str | None = None
    set_size: int = 5
    strategy: str = "s4"
    loss: HybridLossConfig = field(default_factory=set_stage_loss)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.set_size < 2:
            raise ConfigError(f"set_size must be >= 2, got {self.set_size}")
        if self.strategy not in TRAIN_STRATEGIES:
            raise ConfigError(f"strategy must be one of {TRAIN_STRATEGIES}, got {self.strategy!r}")
        if self.data == "synthetic" and self.synthetic_conditions < self.set_size:
            raise ConfigError(
                f"synthetic_conditions ({self.synthetic_conditions}) must be >= set_size "
                f"({self.set_size})"
            )


def load_cnet_config(path: str | os.PathLike[str], **overrides: Any) -> CNetTrainConfig:
    """Read a YAML file of :class:`CNetTrainConfig` fields and apply ``overrides``
    (:func:`facerecon.train.config.load_config`)."""
    return load_config(path, CNetTrainConfig, **overrides)


# ============================================================================ data
class ImageSetDataset(Dataset):
    """Sets of ``set_size`` images of one person from a per-image dataset with ``persons``.

    Items: ``{"image": (M, 3, S, S), "lm68": (M, 68, 2), "attention": (M, 1, S, S),
    "lm_depth": (M, 68), "angles": (M, 3) (each when all images have it), "index": int}``; a
    DataLoader batch adds the set axis in front.
    """

    def __init__(self, items: Dataset, set_size: int) -> None:
        self.items, self.set_size = items, int(set_size)
        by_person: dict[str, list[int]] = {}
        for i, p in enumerate(items.persons):  # type: ignore[attr-defined]
            by_person.setdefault(p, []).append(i)
        m = self.set_size
        self.sets = [
            idx[k : k + m] for idx in by_person.values() for k in range(0, len(idx) - m + 1, m)
        ]
        if not self.sets:
            raise FaceReconError(f"no person has {m} images: cannot build image sets")

    def set_epoch(self, epoch: int) -> None:
        self.items.set_epoch(epoch)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.sets)

    def __getitem__(self, index: int) -> dict[str, Any]:
        got = [self.items[i] for i in self.sets[index]]
        out: dict[str, Any] = {k: torch.stack([g[k] for g in got]) for k in ("image", "lm68")}
        for k in ("attention", "lm_depth", "angles"):
            if all(k in g for g in got):
                out[k] = torch.stack([g[k] for g in got])
        out["index"] = int(index)
        return out


# ============================================================================ objective
def set_terms(
    model: MorphableModel,
    coeffs: torch.Tensor,
    conf: torch.Tensor,
    image: torch.Tensor,
    lm68: torch.Tensor,
    attention: torch.Tensor,
    strategy: str = "s4",
    loss: HybridLossConfig | None = None,
    render_size: int = 224,
    **render: Any,
) -> dict[str, torch.Tensor]:
    """Unweighted hybrid-loss terms of every image re-rendered with the set's identity.

    Args:
        model: face model of the coefficient layout.
        coeffs: ``(S, M, layout.size)`` per-image R-Net coefficients (no gradient needed).
        conf: ``(S, M, n_id)`` or ``(S, M, 1)`` C-Net confidences.
        image: ``(S, M, 3, H, W)`` aligned crops in 0..1; lm68 ``(S, M, 68, 2)``;
            attention ``(S, M, 1, H, W)`` skin attention.
        strategy: aggregation (:data:`facerecon.aggregate.STRATEGIES`).
        loss, render_size, render: as in :func:`facerecon.train.objective.rnet_terms`
            (``facerec``, ``target_embedding (S*M, D)``, ``rasterizer``, ``camera``).

    Returns:
        name -> scalar tensor (photo, landmark, coef, tex, light, perceptual as enabled).
    """
    agg = aggregate_set(coeffs, conf.to(coeffs.dtype), model.layout, strategy)
    return rnet_terms(
        model,
        agg.flatten(0, 1),
        image.flatten(0, 1),
        lm68.flatten(0, 1),
        attention.flatten(0, 1),
        loss,
        render_size=render_size,
        **render,
    )


class SetStep(HybridStep):
    """Hybrid loss of a batch of sets ``(S, M, 3, H, W)`` re-rendered with their aggregated
    identities (:func:`set_terms`); the R-Net is frozen, only the C-Net gets gradients.

    Args:
        cfg, model, device: as in :class:`facerecon.train.objective.HybridStep`.
        rnet: the frozen R-Net (features and coefficients at its ``input_size``).
    """

    def __init__(
        self, cfg: CNetTrainConfig, model: MorphableModel, rnet: Any, device: torch.device
    ) -> None:
        super().__init__(cfg, model, device)
        self.rnet = rnet

    def flat(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.flatten(0, 1) for k, v in batch.items() if k != "index"}

    def forward(self, cnet: torch.nn.Module, image: torch.Tensor) -> tuple[Any, Any]:
        with torch.no_grad():
            coeffs, feats = rnet_outputs(self.rnet, image)  # at the R-Net's input_size
        return coeffs, cnet(feats["shallow"], feats["pooled"])

    def terms(self, batch, out, image, lm68, attention, **render) -> dict[str, torch.Tensor]:
        s, m = batch["image"].shape[:2]
        coeffs, conf = out
        return set_terms(
            self.model,
            coeffs.float().view(s, m, -1),
            conf.float().view(s, m, -1),
            image.view(s, m, *image.shape[1:]),
            lm68.view(s, m, 68, 2),
            attention.view(s, m, *attention.shape[1:]),
            self.cfg.strategy,
            self.cfg.loss,
            **render,
        )


# ============================================================================ training
def _prepare(cfg: CNetTrainConfig, model: MorphableModel, device: torch.device) -> RunParts:
    from facerecon.nets.rnet import load_rnet

    rnet = load_rnet(cfg.rnet, device=device).requires_grad_(False).eval()
    if rnet.layout != model.layout:
        raise ConfigError(
            f"R-Net {cfg.rnet} predicts layout {rnet.layout}, face model {cfg.face_model} "
            f"has {model.layout}"
        )
    items_train, items_val = build_datasets(cfg, model)
    return RunParts(
        ImageSetDataset(items_train, cfg.set_size),
        ImageSetDataset(items_val, cfg.set_size) if items_val is not None else None,
        build_net=lambda: CNet.for_rnet(rnet, n_id=1 if cfg.strategy == "s1" else None),
        build_step=lambda: SetStep(cfg, model, rnet, device),
        weights_meta={
            "face_model": cfg.face_model,
            "rnet": str(cfg.rnet),
            "rnet_config": dataclasses.asdict(rnet.config),
            "strategy": cfg.strategy,
        },
    )


#: C-Net training: ``cnet.pt`` (``facerecon.nets.cnet.save_cnet``), checkpoints
#: ``facerecon-cnet-train-2``.
CNET = NetSpec(
    "cnet", "a C-Net", save_cnet, _prepare, progress="train cnet", run_name="C-Net training"
)

save_cnet_checkpoint = CNET.save_checkpoint
load_cnet_checkpoint = CNET.load_checkpoint


def train_cnet(config: CNetTrainConfig) -> dict[str, Any]:
    """Train a C-Net on image sets with a frozen R-Net (see the module docstring).

    Returns:
        ``{"start_step", "steps", "steps_per_epoch", "losses", "final_loss", "val",
        "weights" (cnet.pt), "checkpoint", "seconds", "world_size"}`` as ``train_rnet``.
    """
    if config.rnet is None:
        raise ConfigError("C-Net training needs trained R-Net weights (rnet: PATH / --rnet)")
    return train(config, CNET)


# ============================================================================ command line
def _cnet_flags(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--rnet", help="trained R-Net weights (required)")
    ap.add_argument("--set-size", dest="set_size", type=int, help="images per set (M)")
    ap.add_argument("--strategy", choices=TRAIN_STRATEGIES, help="aggregation (default s4)")


#: ``facerecon train cnet``: ``facerecon train``'s flags (``--backbone`` is ignored) plus
#: ``--rnet``, ``--set-size`` and ``--strategy``.
CNET_COMMAND = TrainCommand(
    prog="facerecon train cnet",
    description="Train the C-Net (image-set confidences) with a frozen R-Net on sets of images "
    "of one person. Multi-GPU: torchrun --nproc_per_node N -m facerecon.train.cnet ...",
    config_type=CNetTrainConfig,
    flags=(*(f for f in TRAIN_FLAGS if f != "backbone"), "rnet", "set_size", "strategy"),
    train=train_cnet,
    trained="trained C-Net",
    add_flags=_cnet_flags,
)


def build_cnet_parser() -> argparse.ArgumentParser:
    """The parser of ``facerecon train cnet`` (:data:`CNET_COMMAND`)."""
    return build_parser(CNET_COMMAND)


def cnet_config_from_args(args: argparse.Namespace) -> CNetTrainConfig:
    """Defaults <- ``--config`` file <- explicit flags <- ``--set`` overrides."""
    return config_from_args(args, CNET_COMMAND)


def main_train_cnet(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, train the C-Net, print a one-line summary; returns the exit code."""
    return run_command(CNET_COMMAND, argv)


if __name__ == "__main__":
    sys.exit(main_train_cnet())

"""R-Net training (Deng et al. 2019): coefficients regressed from single images, trained with the
hybrid loss through the renderer.

The trainer is a step function (:class:`RNetStep`: the R-Net's coefficients of a batch, their
hybrid loss) and a net spec (:data:`RNET`); the engine (:mod:`facerecon.train.engine`) does
data order, metrics, checkpoints with exact resume, validation and DDP. Run layout
(``config.out_dir``)::

    config.yaml, metrics.csv, checkpoints/last.pt, checkpoints/step_N.pt
    rnet.pt                final weights (``facerecon.nets.rnet.load_rnet``)
"""

from __future__ import annotations

from typing import Any

import torch

from facerecon.morphable import MorphableModel
from facerecon.nets.rnet import RNet, save_rnet
from facerecon.train.config import TrainConfig
from facerecon.train.data import build_datasets
from facerecon.train.engine import NetSpec, RunParts, train
from facerecon.train.objective import HybridStep, rnet_terms

__all__ = ["RNET", "RNetStep", "load_checkpoint", "save_checkpoint", "train_rnet"]


class RNetStep(HybridStep):
    """Hybrid loss of the R-Net's coefficients of a batch of images (``(B, 3, S, S)``; the net
    resizes to its ``input_size``)."""

    def forward(self, net: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
        return net(image)

    def terms(self, batch, out, image, lm68, attention, **render) -> dict[str, torch.Tensor]:
        return rnet_terms(self.model, out.float(), image, lm68, attention, self.cfg.loss, **render)


def _prepare(cfg: TrainConfig, model: MorphableModel, device: torch.device) -> RunParts:
    train_set, val_set = build_datasets(cfg, model)
    return RunParts(
        train_set,
        val_set,
        build_net=lambda: RNet(
            model.layout, cfg.backbone, cfg.width_mult, cfg.pretrained, cfg.input_size
        ),
        build_step=lambda: RNetStep(cfg, model, device),
        weights_meta={"face_model": cfg.face_model, "train_config": cfg.to_dict()},
    )


#: R-Net training: ``rnet.pt`` (``facerecon.nets.rnet.save_rnet``), checkpoints
#: ``facerecon-rnet-train-2``.
RNET = NetSpec("rnet", "an R-Net", save_rnet, _prepare)

save_checkpoint = RNET.save_checkpoint
load_checkpoint = RNET.load_checkpoint


def train_rnet(config: TrainConfig) -> dict[str, Any]:
    """Train an R-Net with the hybrid loss (see :func:`facerecon.train.engine.train` for the
    files, DDP and determinism).

    Args:
        config: the run; ``config.out_dir`` receives metrics, checkpoints and ``rnet.pt``.

    Returns:
        ``{"start_step", "steps", "steps_per_epoch", "losses" (total per step of this process,
        this run only), "final_loss", "val" (last validation means or None), "weights" (path
        of rnet.pt), "checkpoint", "seconds", "world_size"}``.
    """
    return train(config, RNET)

"""PGN training: pose from predicted 3D landmarks, shape through the hybrid loss, one identity
across the frames of a person (:mod:`facerecon.nets.pgn` has the network and the pose).

Each training item is ``set_size`` images of one person (a prepared folder's person, or the
frames of a clip). The step:

1. The PGN gives every image its shape coefficients and 68 ``(u, v, depth)`` landmarks.
2. Multi-frame consistency (``consistency``): ``"mean"`` replaces every frame's identity by the
   mean over its set before rendering (the shape that must explain all frames: each frame's
   loss checks the others' shape); ``"swap"`` gives every frame the identity predicted for
   another frame of its set (a cyclic shift, the DECA / EMOCA form); ``"none"`` trains frames
   independently. The identity prior still applies to each frame's own prediction.
3. Pose: :func:`facerecon.nets.pgn.pgn_coeffs`, Procrustes of the model's landmark vertices
   under that identity and the frame's expression onto the predicted landmarks.
4. Terms: the hybrid loss of the render (:func:`facerecon.train.objective.rnet_terms`:
   photometric, projected model landmarks, coefficient / albedo / light priors, perceptual
   when on); ``lm2d``: mean squared pixel distance of the predicted ``(u, v)`` to the 68
   landmarks of the item; ``lm3d``: mean squared difference of the predicted depth (minus its
   mean) to the label, on items that carry one (synthetic ``lm_depth``); unlabelled photos
   simply have no ``lm3d`` term.

The trainer is a step function (:class:`PGNStep`) and a net spec (:data:`PGN`) on the training
engine (:mod:`facerecon.train.engine`): the same config fields, YAML, seeded order, metrics,
checkpoints with exact resume, validation and DDP as R-Net training. Run layout::

    config.yaml, metrics.csv, checkpoints/, pgn.pt (facerecon.nets.pgn.load_pgn)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from facerecon.errors import FaceReconError
from facerecon.losses import HybridLossConfig
from facerecon.losses.terms import coefficient_regularization
from facerecon.morphable import MorphableModel
from facerecon.nets.pgn import PGNConfig, PGNet, from_rnet, landmark_template, pgn_coeffs, save_pgn
from facerecon.train.cli import TRAIN_FLAGS, TrainCommand, run_command
from facerecon.train.config import ConfigError, TrainConfig
from facerecon.train.data import build_datasets
from facerecon.train.engine import NetSpec, RunParts, train
from facerecon.train.objective import HybridStep, rnet_terms

__all__ = [
    "PGN",
    "PGN_COMMAND",
    "PGNStep",
    "PGNTrainConfig",
    "consistent_identity",
    "main_train_pgn",
    "pgn_loss",
    "pgn_terms",
    "train_pgn",
]

CONSISTENCY = ("mean", "swap", "none")


def pgn_loss() -> HybridLossConfig:
    """The R-Net CPU recipe's weights (``configs/rnet_cpu.yaml``: identity / expression priors
    5x / 3x the paper's) plus ``lm2d`` and ``lm3d`` at the landmark term's 1.6e-3 per squared
    pixel."""
    return HybridLossConfig(alpha=5.0, beta=2.4, extra={"lm2d": 1.6e-3, "lm3d": 1.6e-3})


@dataclass
class PGNTrainConfig(TrainConfig):
    """A :class:`facerecon.train.TrainConfig` plus the PGN fields.

    ``batch_size`` counts *sets* per process (each of ``set_size`` images).

    Attributes:
        init_rnet: R-Net weights to start from (backbone and shape head; its ``backbone``,
            ``width_mult`` and ``input_size`` then win over this config's); None starts from
            ``backbone`` / ``pretrained``.
        init_pgn: PGN weights to start from (the whole net: continue a run from its exported
            weights, or fine-tune the shipped ones on your own data); wins over ``init_rnet``.
            The net's own ``backbone``, ``width_mult`` and ``input_size`` win over this
            config's.
        set_size: images of one person per item (1: no multi-frame term).
        consistency: ``"mean"``, ``"swap"`` or ``"none"`` (module docstring).
    """

    data: str = "data/synthetic_pgn"
    out_dir: str = "runs/pgn"
    backbone: Literal["resnet50", "mobilenet_v2"] = "mobilenet_v2"
    batch_size: int = 4
    perceptual: bool = False
    loss: HybridLossConfig = field(default_factory=pgn_loss)
    init_rnet: str | None = None
    init_pgn: str | None = None
    set_size: int = 2
    consistency: str = "mean"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.set_size < 1:
            raise ConfigError(f"set_size must be >= 1, got {self.set_size}")
        if self.consistency not in CONSISTENCY:
            raise ConfigError(f"consistency must be one of {CONSISTENCY}, got {self.consistency!r}")


def consistent_identity(id_coeff: torch.Tensor, mode: str) -> torch.Tensor:
    """The identity each frame is rendered with.

    Args:
        id_coeff: ``(S, M, n_id)`` per-frame predictions, ``S`` sets of ``M`` frames.
        mode: ``"mean"`` (set mean for every frame), ``"swap"`` (frame ``m`` gets frame
            ``m + 1``'s, cyclically), ``"none"``.

    Returns:
        ``(S, M, n_id)``.
    """
    if mode == "none" or id_coeff.shape[1] == 1:
        return id_coeff
    if mode == "mean":
        return id_coeff.mean(1, keepdim=True).expand_as(id_coeff)
    if mode == "swap":
        return id_coeff.roll(-1, dims=1)
    raise ValueError(f"consistency must be one of {CONSISTENCY}, got {mode!r}")


def pgn_terms(
    model: MorphableModel,
    out: dict[str, torch.Tensor],
    image: torch.Tensor,
    lm68: torch.Tensor,
    attention: torch.Tensor,
    set_size: int = 1,
    consistency: str = "mean",
    lm_depth: torch.Tensor | None = None,
    loss: HybridLossConfig | None = None,
    **render: Any,
) -> dict[str, torch.Tensor]:
    """Unweighted PGN terms of a flat batch of ``N = S * set_size`` images.

    Args:
        model: face model.
        out: :meth:`facerecon.nets.pgn.PGNet.forward` of the batch (``shape (N, n_shape)``,
            ``lm3d (N, 68, 3)``).
        image, lm68, attention: ``(N, 3, H, W)``, ``(N, 68, 2)``, ``(N, 1, H, W)``.
        set_size: frames per person (consecutive in the batch).
        consistency: :func:`consistent_identity` mode.
        lm_depth: ``(N, 68)`` depth labels (NaN rows: no label) or None.
        loss, render: as :func:`facerecon.train.objective.rnet_terms`.

    Returns:
        name -> scalar: the hybrid terms plus ``lm2d`` and (with labels) ``lm3d``.
    """
    lay = model.layout
    shape = out["shape"].float()
    lm3d = out["lm3d"].float()
    n = shape.shape[0]
    ids = shape[:, : lay.n_id]
    shared = consistent_identity(ids.view(n // set_size, set_size, -1), consistency)
    coeffs = pgn_coeffs(model, {"shape": shape, "lm3d": lm3d}, id_coeff=shared.reshape(n, -1))
    # the prior applies to each frame's own identity, not to the shared one
    sl = lay.slices()["id_coeff"]
    prior_coeffs = torch.cat([coeffs[:, : sl.start], ids, coeffs[:, sl.stop :]], dim=1)
    terms = rnet_terms(model, coeffs, image, lm68, attention, loss, **render)
    if "coef" in terms and consistency != "none":
        cfg = loss or HybridLossConfig()
        parts = lay.split(prior_coeffs)
        terms["coef"] = coefficient_regularization(
            parts["id_coeff"], parts["exp_coeff"], parts["tex_coeff"], cfg.alpha, cfg.beta,
            cfg.delta,
        )  # fmt: skip
    terms["lm2d"] = ((lm3d[..., :2] - lm68.float()) ** 2).sum(-1).mean()
    if lm_depth is not None:
        has = torch.isfinite(lm_depth).all(-1)
        if bool(has.any()):
            d = lm3d[has, :, 2]
            d = d - d.mean(-1, keepdim=True)
            terms["lm3d"] = ((d - lm_depth[has].to(d)) ** 2).mean()
    return terms


class PGNStep(HybridStep):
    """Hybrid loss + landmark terms of a batch of sets ``(S, M, 3, H, W)`` (or single images
    ``(N, 3, H, W)`` when ``set_size`` is 1)."""

    def flat(self, batch: dict[str, Any]) -> dict[str, Any]:
        if batch["image"].dim() == 5:
            return {k: v.flatten(0, 1) for k, v in batch.items() if k != "index"}
        return batch

    def forward(self, net: torch.nn.Module, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return net(image)

    def terms(self, batch, out, image, lm68, attention, **render) -> dict[str, torch.Tensor]:
        depth = self.flat(batch).get("lm_depth")
        if depth is not None:
            depth = depth.to(self.device)
        m = batch["image"].shape[1] if batch["image"].dim() == 5 else 1
        return pgn_terms(
            self.model,
            out,
            image,
            lm68,
            attention,
            m,
            self.cfg.consistency,
            depth,
            self.cfg.loss,
            **render,
        )


def _build_net(cfg: PGNTrainConfig, model: MorphableModel) -> PGNet:
    if cfg.init_pgn:
        from facerecon.nets.pgn import load_pgn

        net = load_pgn(cfg.init_pgn)
        if net.layout != model.layout:
            raise ConfigError(f"{cfg.init_pgn} is not a PGN of face model {cfg.face_model}")
        return net.train()
    if cfg.init_rnet:
        from facerecon.nets.rnet import load_rnet

        rnet = load_rnet(cfg.init_rnet)
        if rnet.layout != model.layout:
            raise ConfigError(f"{cfg.init_rnet} is not an R-Net of face model {cfg.face_model}")
        return from_rnet(rnet, model).train()
    lay = model.layout
    net = PGNet(
        PGNConfig(lay.n_id, lay.n_exp, lay.n_tex, cfg.backbone, cfg.width_mult, cfg.input_size),
        pretrained=cfg.pretrained,
    )
    with torch.no_grad():
        net.template.copy_(landmark_template(model))
    return net


def _prepare(cfg: PGNTrainConfig, model: MorphableModel, device: torch.device) -> RunParts:
    from facerecon.train.cnet import ImageSetDataset

    items_train, items_val = build_datasets(cfg, model)
    if cfg.set_size > 1:
        items_train = ImageSetDataset(items_train, cfg.set_size)
        items_val = ImageSetDataset(items_val, cfg.set_size) if items_val is not None else None
    return RunParts(
        items_train,
        items_val,
        build_net=lambda: _build_net(cfg, model),
        build_step=lambda: PGNStep(cfg, model, device),
        weights_meta={"face_model": cfg.face_model, "train_config": cfg.to_dict()},
    )


#: PGN training: ``pgn.pt`` (:func:`facerecon.nets.pgn.save_pgn`).
PGN = NetSpec("pgn", "a PGN", save_pgn, _prepare, run_name="PGN training")


def train_pgn(config: PGNTrainConfig) -> dict[str, Any]:
    """Train a PGN (:func:`facerecon.train.engine.train`'s files and result keys)."""
    if not isinstance(config, PGNTrainConfig):
        raise FaceReconError("train_pgn needs a PGNTrainConfig")
    return train(config, PGN)


def _pgn_flags(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--init-rnet", dest="init_rnet", help="R-Net weights to start from")
    ap.add_argument(
        "--init-pgn", dest="init_pgn", help="PGN weights to start from (continue or fine-tune)"
    )
    ap.add_argument("--set-size", dest="set_size", type=int, help="frames of one person per item")
    ap.add_argument("--consistency", choices=CONSISTENCY, help="multi-frame identity term")


#: ``facerecon train pgn``: ``facerecon train``'s flags plus ``--init-rnet``, ``--set-size``,
#: ``--consistency``.
PGN_COMMAND = TrainCommand(
    prog="facerecon train pgn",
    description="Train the pose-guided network (PGN) on a prepared folder "
    "(scripts/make_training_set.py writes synthetic ones with 3D-landmark labels).",
    config_type=PGNTrainConfig,
    flags=(*TRAIN_FLAGS, "init_rnet", "init_pgn", "set_size", "consistency"),
    train=train_pgn,
    trained="trained PGN",
    add_flags=_pgn_flags,
)


def main_train_pgn(argv: Sequence[str] | None = None) -> int:
    """``facerecon train pgn``: parse, train, print a one-line summary; the exit code."""
    return run_command(PGN_COMMAND, argv)


if __name__ == "__main__":
    sys.exit(main_train_pgn())

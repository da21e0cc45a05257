"""C-Net training (Deng et al. 2019, Sec. 4): label-free, on image sets, with a frozen R-Net.

Each training item is a set of M images of one person. The frozen R-Net gives every image its
coefficients and features; the C-Net turns the features into identity confidences; the
identities are aggregated over the set (:func:`facerecon.aggregate.aggregate_set`, S4 by
default) and every image is re-rendered with the aggregated identity and its own expression,
albedo, pose and lighting. The loss is the hybrid loss of the re-renders with the set-stage
weights (photometric 1.9, landmarks 1.6e-3, perceptual 0.1; :func:`set_stage_loss`): only the
C-Net is updated, so it learns to trust the images whose identity explains the whole set.

The infrastructure is R-Net training's (:mod:`facerecon.train.loop`): the same config fields
and YAML, data sources (``synthetic`` identity sets with mixed poses and occluders, or prepared
folders with one sub-folder per person), seeded data order, metrics CSV, checkpoints with exact
resume and DDP under torchrun. Run layout (``config.out_dir``)::

    config.yaml, metrics.csv, checkpoints/last.pt, checkpoints/step_N.pt
    cnet.pt                final weights (``facerecon.nets.cnet.load_cnet``)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader, Dataset

from facerecon.aggregate import aggregate_set
from facerecon.errors import FaceReconError
from facerecon.losses import HybridLossConfig, hybrid_loss
from facerecon.morphable import MorphableModel
from facerecon.nets.cnet import CNet, CNetConfig, rnet_outputs, save_cnet
from facerecon.train.config import ConfigError, TrainConfig, save_config
from facerecon.train.loop import (
    _batches,
    _device,
    _dist_env,
    _MetricsCSV,
    _prepare_batch,
    _resume_path,
    _rng_states,
    _set_rng_states,
    build_datasets,
    steps_per_epoch,
)
from facerecon.train.objective import rnet_terms

__all__ = [
    "CNetTrainConfig",
    "ImageSetDataset",
    "load_cnet_checkpoint",
    "load_cnet_config",
    "main_train_cnet",
    "save_cnet_checkpoint",
    "set_stage_loss",
    "set_terms",
    "train_cnet",
]

CKPT_FORMAT = "facerecon-cnet-train-1"
TRAIN_STRATEGIES = ("s1", "s2", "s4")  # differentiable in the confidences (S3 is an argmax)

Embedder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CNetTrainConfig:
        return super().from_dict(d)  # type: ignore[return-value]


def load_cnet_config(path: str | os.PathLike[str], **overrides: Any) -> CNetTrainConfig:
    """Read a YAML file of :class:`CNetTrainConfig` fields and apply ``overrides``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"training config not found: {p}")
    try:
        d = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({type(exc).__name__})") from exc
    if not isinstance(d, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    d.update(overrides)
    return CNetTrainConfig.from_dict(d)


# ============================================================================ data
class ImageSetDataset(Dataset):
    """Sets of ``set_size`` images of one person from a per-image dataset with ``persons``.

    Items: ``{"image": (M, 3, S, S), "lm68": (M, 68, 2), "attention": (M, 1, S, S) (when the
    images have it), "index": int}``; a DataLoader batch adds the set axis in front.
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
        if all("attention" in g for g in got):
            out["attention"] = torch.stack([g["attention"] for g in got])
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
    facerec: Embedder | None = None,
    target_embedding: torch.Tensor | None = None,
    rasterizer: str = "torch",
) -> dict[str, torch.Tensor]:
    """Unweighted hybrid-loss terms of every image re-rendered with the set's identity.

    Args:
        model: face model of the coefficient layout.
        coeffs: ``(S, M, layout.size)`` per-image R-Net coefficients (no gradient needed).
        conf: ``(S, M, n_id)`` or ``(S, M, 1)`` C-Net confidences.
        image: ``(S, M, 3, H, W)`` aligned crops in 0..1; lm68 ``(S, M, 68, 2)``;
            attention ``(S, M, 1, H, W)`` skin attention.
        strategy: aggregation (:data:`facerecon.aggregate.STRATEGIES`).
        loss, render_size, facerec, target_embedding, rasterizer: as in
            :func:`facerecon.train.objective.rnet_terms` (``target_embedding (S*M, D)``).

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
        facerec=facerec,
        target_embedding=target_embedding,
        rasterizer=rasterizer,
    )


class _SetStep:
    """Forward + loss of one batch of sets (training and validation)."""

    def __init__(self, cfg: CNetTrainConfig, model: Any, rnet: Any, device: torch.device):
        self.cfg, self.model, self.rnet, self.device = cfg, model, rnet, device
        self.facerec = None
        if cfg.perceptual and cfg.loss.w_perceptual:
            import functools

            from facerecon.nets.facerec import embed, load_facerec

            self.facerec = functools.partial(embed, load_facerec(device=device))
        self.autocast = cfg.amp == "bf16" and device.type == "cuda"

    def __call__(
        self, cnet: torch.nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.cfg
        s, m = batch["image"].shape[:2]
        flat = {k: v.flatten(0, 1) for k, v in batch.items() if k != "index"}
        image, lm68, att = _prepare_batch(flat, self.device, self.cfg.skin_attention)
        ctx = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.autocast
            else contextlib.nullcontext()
        )
        with ctx:
            with torch.no_grad():
                coeffs, feats = rnet_outputs(self.rnet, image)  # at the R-Net's input_size
            conf = cnet(feats["shallow"], feats["pooled"])
        target_emb = None
        if self.facerec is not None:
            with torch.no_grad():
                target_emb = self.facerec(image, lm68)
        terms = set_terms(
            self.model,
            coeffs.float().view(s, m, -1),
            conf.float().view(s, m, -1),
            image.view(s, m, *image.shape[1:]),
            lm68.view(s, m, 68, 2),
            att.view(s, m, *att.shape[1:]),
            cfg.strategy,
            cfg.loss,
            render_size=cfg.render_size,
            facerec=self.facerec,
            target_embedding=target_emb,
            rasterizer=cfg.rasterizer,
        )
        return hybrid_loss(terms, cfg.loss)


@torch.no_grad()
def _validate(step_fn: _SetStep, net: torch.nn.Module, ds: Dataset, cfg: TrainConfig) -> dict:
    was = net.training
    net.eval()
    sums: dict[str, float] = {}
    n = 0
    for batch in DataLoader(ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers):
        total, parts = step_fn(net, batch)
        b = batch["image"].shape[0]
        sums["loss"] = sums.get("loss", 0.0) + float(total) * b
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v) * b
        n += b
    net.train(was)
    return {k: v / max(n, 1) for k, v in sums.items()}


# ============================================================================ checkpoints
def save_cnet_checkpoint(
    path: str | os.PathLike[str],
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    step: int,
    config: CNetTrainConfig,
) -> Path:
    """Everything needed to continue C-Net training at ``step`` (written atomically)."""
    raw = getattr(net, "module", net)
    payload = {
        "format": CKPT_FORMAT,
        "step": int(step),
        "cnet_config": dataclasses.asdict(raw.config),
        "model": raw.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_states(),
        "train_config": config.to_dict(),
    }
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, p)
    return p


def load_cnet_checkpoint(
    path: str | os.PathLike[str],
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    restore_rng: bool = True,
) -> int:
    """Restore a :func:`save_cnet_checkpoint` file; returns its step."""
    p = Path(path)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise FaceReconError(f"cannot read checkpoint {p}: {type(exc).__name__}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CKPT_FORMAT:
        raise FaceReconError(f"{p} is not a C-Net training checkpoint")
    raw = getattr(net, "module", net)
    if CNetConfig.from_dict(payload["cnet_config"]) != raw.config:
        raise FaceReconError(f"checkpoint {p} is for another C-Net configuration")
    raw.load_state_dict(payload["model"])
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(payload["scheduler"])
    if restore_rng:
        _set_rng_states(payload["rng"])
    return int(payload["step"])


# ============================================================================ training
def train_cnet(config: CNetTrainConfig) -> dict[str, Any]:
    """Train a C-Net on image sets with a frozen R-Net (see the module docstring).

    Returns:
        ``{"start_step", "steps", "steps_per_epoch", "losses", "final_loss", "val",
        "weights" (cnet.pt), "checkpoint", "seconds", "world_size"}`` as ``train_rnet``.
    """
    from facerecon.morphable import load_face_model

    cfg = config
    rank, world, local_rank = _dist_env()
    own_group = False
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if cfg.device != "cpu" and torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        own_group = True
    try:
        return _train(cfg, rank, world, local_rank, load_face_model)
    finally:
        if own_group:
            dist.destroy_process_group()


def _train(cfg: CNetTrainConfig, rank: int, world: int, local_rank: int, load_face_model):
    from tqdm import tqdm

    from facerecon.nets.rnet import load_rnet

    t_start = time.perf_counter()
    if cfg.rnet is None:
        raise ConfigError("C-Net training needs trained R-Net weights (rnet: PATH / --rnet)")
    device = _device(cfg, local_rank)
    is_main = rank == 0
    out = Path(cfg.out_dir)
    model = load_face_model(cfg.face_model, device=device)
    rnet = load_rnet(cfg.rnet, device=device).requires_grad_(False).eval()
    if rnet.layout != model.layout:
        raise ConfigError(
            f"R-Net {cfg.rnet} predicts layout {rnet.layout}, face model {cfg.face_model} "
            f"has {model.layout}"
        )
    items_train, items_val = build_datasets(cfg, model)
    train_ds = ImageSetDataset(items_train, cfg.set_size)
    val_ds = ImageSetDataset(items_val, cfg.set_size) if items_val is not None else None

    torch.manual_seed(cfg.seed)
    cnet = CNet.for_rnet(rnet, n_id=1 if cfg.strategy == "s1" else None).to(device)
    opt = torch.optim.Adam(cnet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    spe = steps_per_epoch(len(train_ds), cfg.batch_size, world)
    total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * spe
    milestones = sorted({max(1, round(m * spe)) for m in cfg.lr_milestones})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=cfg.lr_gamma)

    resume = _resume_path(cfg)
    start_step = load_cnet_checkpoint(resume, cnet, opt, sched) if resume is not None else 0
    step_fn = _SetStep(cfg, model, rnet, device)
    train_net: torch.nn.Module = cnet
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        train_net = torch.nn.parallel.DistributedDataParallel(cnet, device_ids=ids)

    metrics = None
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        metrics = _MetricsCSV(out / "metrics.csv", start_step if resume is not None else None)
    bar = tqdm(
        total=total_steps,
        initial=start_step,
        disable=not (is_main and cfg.progress),
        desc="train cnet",
        unit="step",
    )
    losses: list[float] = []
    val_result = None
    ckpt_dir = out / "checkpoints"
    last_ckpt = ckpt_dir / "last.pt"
    train_net.train()
    step = start_step
    data = _batches(train_ds, cfg, start_step, spe, rank, world)
    try:
        while step < total_steps:
            t0 = time.perf_counter()
            epoch, batch = next(data)
            lr = opt.param_groups[0]["lr"]
            total, parts = step_fn(train_net, batch)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            sched.step()
            step += 1
            loss = float(total.detach())
            if not math.isfinite(loss):
                raise FaceReconError(f"C-Net training diverged at step {step} (loss {loss})")
            losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if metrics is not None and cfg.log_every and step % cfg.log_every == 0:
                row = {k: float(v.detach()) for k, v in parts.items()}
                row.update(step=step, epoch=epoch, split="train", loss=loss, lr=lr)
                metrics.write({**row, "seconds": time.perf_counter() - t0})
            if is_main and val_ds is not None and cfg.val_every and step % cfg.val_every == 0:
                tv = time.perf_counter()
                val_result = _validate(step_fn, cnet, val_ds, cfg)
                if metrics is not None:
                    metrics.write(
                        {
                            **val_result,
                            "step": step,
                            "epoch": epoch,
                            "split": "val",
                            "lr": lr,
                            "seconds": time.perf_counter() - tv,
                        }
                    )
            if is_main and cfg.ckpt_every and step % cfg.ckpt_every == 0:
                p = save_cnet_checkpoint(
                    ckpt_dir / f"step_{step:08d}.pt", cnet, opt, sched, step, cfg
                )
                tmp = last_ckpt.with_name(f".last.pt.tmp{os.getpid()}")
                shutil.copyfile(p, tmp)
                os.replace(tmp, last_ckpt)
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
    weights = out / "cnet.pt"
    if is_main:
        save_cnet_checkpoint(last_ckpt, cnet, opt, sched, step, cfg)
        meta = {
            "step": step,
            "face_model": cfg.face_model,
            "rnet": str(cfg.rnet),
            "rnet_config": dataclasses.asdict(rnet.config),
            "strategy": cfg.strategy,
        }
        save_cnet(cnet, weights, meta=meta)
    if world > 1:
        dist.barrier()
    return {
        "start_step": start_step,
        "steps": step,
        "steps_per_epoch": spe,
        "losses": losses,
        "final_loss": losses[-1] if losses else None,
        "val": val_result,
        "weights": str(weights),
        "checkpoint": str(last_ckpt),
        "seconds": time.perf_counter() - t_start,
        "world_size": world,
    }


# ============================================================================ command line
def build_cnet_parser() -> argparse.ArgumentParser:
    """``facerecon train``'s flags (``--backbone`` is ignored) plus ``--rnet``,
    ``--set-size`` and ``--strategy``."""
    from facerecon.train.cli import build_parser

    ap = build_parser()
    ap.prog = "facerecon train cnet"
    ap.description = (
        "Train the C-Net (image-set confidences) with a frozen R-Net on sets of images of one "
        "person. Multi-GPU: torchrun --nproc_per_node N -m facerecon.train.cnet ..."
    )
    ap.add_argument("--rnet", help="trained R-Net weights (required)")
    ap.add_argument("--set-size", dest="set_size", type=int, help="images per set (M)")
    ap.add_argument("--strategy", choices=TRAIN_STRATEGIES, help="aggregation (default s4)")
    return ap


def cnet_config_from_args(args: argparse.Namespace) -> CNetTrainConfig:
    """Defaults <- ``--config`` file <- explicit flags <- ``--set`` overrides."""
    from facerecon.train.cli import TRAIN_FLAGS, config_dict_from_args

    cfg = load_cnet_config(args.config) if args.config else CNetTrainConfig()
    flags = (*(f for f in TRAIN_FLAGS if f != "backbone"), "rnet", "set_size", "strategy")
    return CNetTrainConfig.from_dict(config_dict_from_args(args, cfg, flags))


def main_train_cnet(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, train the C-Net, print a one-line summary; returns the exit code."""
    args = build_cnet_parser().parse_args(argv)
    try:
        cfg = cnet_config_from_args(args)
        if args.print_config:
            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return 0
        res = train_cnet(cfg)
    except FaceReconError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if res.get("world_size", 1) == 1 or int(os.environ.get("RANK", "0")) == 0:
        final = res["final_loss"]
        loss = f"{final:.4f}" if final is not None else "n/a"
        print(
            f"trained C-Net steps {res['start_step']}..{res['steps']} in {res['seconds']:.1f} s, "
            f"last loss {loss}; weights: {res['weights']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main_train_cnet())

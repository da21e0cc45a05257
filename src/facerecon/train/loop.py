"""R-Net training loop: data, hybrid loss through the renderer, logging, checkpoints, DDP.

Run layout (``config.out_dir``)::

    config.yaml            the TrainConfig of the run
    metrics.csv            step, epoch, split (train/val), loss, weighted terms, lr, seconds
    checkpoints/last.pt    model + optimizer + scheduler + RNG states + step (resume point)
    checkpoints/step_N.pt  every ``ckpt_every`` steps
    rnet.pt                final weights (``facerecon.nets.rnet.load_rnet``)

Distributed: launched with ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the loop joins
a process group (nccl on CUDA, gloo on CPU), wraps the net in DistributedDataParallel and gives
every rank its own slice of each epoch's permutation; ``batch_size`` is per process. Only rank 0
writes files, shows progress and validates.

Determinism: the data order of epoch e is a permutation seeded by ``(seed, e)``, the
augmentation of item i in epoch e is seeded by ``(seed, e, i)``, and the net is initialised
after ``torch.manual_seed(seed)``. A run resumed from a checkpoint therefore takes exactly the
steps of an uninterrupted run (identical losses on the same device and thread count).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from facerecon.errors import FaceReconError
from facerecon.losses import hybrid_loss
from facerecon.nets.rnet import RNet, RNetConfig, save_rnet
from facerecon.train.config import TrainConfig, save_config
from facerecon.train.objective import rnet_terms

__all__ = [
    "METRIC_TERMS",
    "build_datasets",
    "epoch_batches",
    "load_checkpoint",
    "save_checkpoint",
    "steps_per_epoch",
    "train_rnet",
]

METRIC_TERMS = ("photo", "landmark", "perceptual", "coef", "tex", "light")
CSV_FIELDS = ("step", "epoch", "split", "loss", *METRIC_TERMS, "lr", "seconds")
CKPT_FORMAT = "facerecon-rnet-train-1"


# ============================================================================ distributed
def _dist_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (0, 1, 0 otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FaceReconError("device 'cuda' requested but CUDA is not available")
        if want == "cuda":
            want = f"cuda:{local_rank}"
        torch.cuda.set_device(torch.device(want))
    return torch.device(want)


# ============================================================================ data
def build_datasets(cfg: TrainConfig, model: Any) -> tuple[Dataset, Dataset | None]:
    """Training set (augmented) and validation set (not augmented, or None).

    Prepared folders are split by person (the last ``val_fraction`` of the sorted person
    folders) when ``val_data`` is None; synthetic data validates on fresh identities.
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


def steps_per_epoch(n: int, batch_size: int, world_size: int = 1) -> int:
    """Optimizer steps per epoch: full batches of each rank's share (at least 1)."""
    per_rank = math.ceil(n / world_size)
    return max(1, per_rank // batch_size)


def epoch_batches(
    n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1
) -> list[list[int]]:
    """This rank's batches of epoch ``epoch``: a ``(seed, epoch)``-seeded permutation padded
    to a multiple of ``world_size``, taken every ``world_size``-th item from ``rank``, cut into
    full batches (one smaller batch when a rank has fewer items than ``batch_size``)."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    total = math.ceil(n / world_size) * world_size
    perm = np.concatenate([perm, perm[: total - n]]) if total > n else perm
    mine = perm[rank::world_size].tolist()
    k = steps_per_epoch(n, batch_size, world_size)
    size = min(batch_size, len(mine))
    return [mine[i * size : (i + 1) * size] for i in range(k)]


def _batches(
    ds: Dataset, cfg: TrainConfig, start_step: int, spe: int, rank: int, world: int
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(epoch, batch)`` from ``start_step`` on, forever."""
    epoch, skip = divmod(start_step, spe)
    while True:
        ds.set_epoch(epoch)
        order = epoch_batches(len(ds), cfg.batch_size, cfg.seed, epoch, rank, world)[skip:]
        loader = DataLoader(ds, batch_sampler=order, num_workers=cfg.num_workers)
        for batch in loader:
            yield epoch, batch
        epoch, skip = epoch + 1, 0


# ============================================================================ checkpoints
def _rng_states() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _set_rng_states(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])


def save_checkpoint(
    path: str | os.PathLike[str],
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    step: int,
    config: TrainConfig,
) -> Path:
    """Write everything needed to continue training at ``step`` (atomically)."""
    raw = getattr(net, "module", net)
    payload = {
        "format": CKPT_FORMAT,
        "step": int(step),
        "rnet_config": dataclasses.asdict(raw.config),
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


def load_checkpoint(
    path: str | os.PathLike[str],
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    restore_rng: bool = True,
) -> int:
    """Restore a :func:`save_checkpoint` file into ``net`` (and optimizer, scheduler, RNGs);
    returns its step."""
    p = Path(path)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise FaceReconError(f"cannot read checkpoint {p}: {type(exc).__name__}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CKPT_FORMAT:
        raise FaceReconError(f"{p} is not an R-Net training checkpoint")
    raw = getattr(net, "module", net)
    if RNetConfig.from_dict(payload["rnet_config"]) != raw.config:
        raise FaceReconError(f"checkpoint {p} is for another R-Net configuration")
    raw.load_state_dict(payload["model"])
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(payload["scheduler"])
    if restore_rng:
        _set_rng_states(payload["rng"])
    return int(payload["step"])


def _resume_path(cfg: TrainConfig) -> Path | None:
    if cfg.resume is None:
        return None
    if cfg.resume == "auto":
        p = Path(cfg.out_dir) / "checkpoints" / "last.pt"
        return p if p.is_file() else None
    p = Path(cfg.resume)
    if not p.is_file():
        raise FaceReconError(f"checkpoint to resume not found: {p}")
    return p


# ============================================================================ metrics
class _MetricsCSV:
    """``metrics.csv`` writer; on resume, drops rows after the resumed step."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        rows: list[dict[str, str]] = []
        if resume_step is not None and path.is_file():
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=CSV_FIELDS)
        self.writer.writeheader()
        self.writer.writerows(rows)
        self.file.flush()

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow({k: _fmt(row.get(k, "")) for k in CSV_FIELDS})
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _fmt(v: Any) -> Any:
    return f"{v:.9g}" if isinstance(v, float) else v


# ============================================================================ training
def _prepare_batch(
    batch: dict[str, Any], device: torch.device, use_skin_attention: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    image = batch["image"].to(device, non_blocking=True)
    lm68 = batch["lm68"].to(device, non_blocking=True)
    att = batch.get("attention")
    if not use_skin_attention:  # every pixel of the rendered face region weighs 1 (ablation)
        att = torch.ones_like(image[:, :1])
    elif att is None:
        from facerecon.skin import skin_attention, skin_probability

        att = skin_attention(skin_probability(image))
    return image, lm68, att.to(device=device, dtype=image.dtype)


class _Step:
    """Forward + loss of one batch, shared by training and validation."""

    def __init__(self, cfg: TrainConfig, model: Any, device: torch.device) -> None:
        self.cfg, self.model, self.device = cfg, model, device
        self.facerec = None
        if cfg.perceptual and cfg.loss.w_perceptual:
            import functools

            from facerecon.nets.facerec import embed, load_facerec

            self.facerec = functools.partial(embed, load_facerec(device=device))
        self.autocast = cfg.amp == "bf16" and device.type == "cuda"

    def __call__(
        self, net: torch.nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.cfg
        image, lm68, att = _prepare_batch(batch, self.device, self.cfg.skin_attention)
        ctx = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.autocast
            else contextlib.nullcontext()
        )
        with ctx:
            coeffs = net(image)  # the net resizes to its input_size
        coeffs = coeffs.float()
        target_emb = None
        if self.facerec is not None:
            with torch.no_grad():
                target_emb = self.facerec(image, lm68)
        terms = rnet_terms(
            self.model,
            coeffs,
            image,
            lm68,
            att,
            cfg.loss,
            render_size=cfg.render_size,
            facerec=self.facerec,
            target_embedding=target_emb,
            rasterizer=cfg.rasterizer,
        )
        return hybrid_loss(terms, cfg.loss)


@torch.no_grad()
def _validate(step_fn: _Step, net: torch.nn.Module, ds: Dataset, cfg: TrainConfig) -> dict:
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


def train_rnet(config: TrainConfig) -> dict[str, Any]:
    """Train an R-Net with the hybrid loss (see the module docstring for files and DDP).

    Args:
        config: the run; ``config.out_dir`` receives metrics, checkpoints and ``rnet.pt``.

    Returns:
        ``{"start_step", "steps", "steps_per_epoch", "losses" (total per step of this process,
        this run only), "final_loss", "val" (last validation means or None), "weights" (path
        of rnet.pt), "checkpoint", "seconds", "world_size"}``.
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


def _train(cfg: TrainConfig, rank: int, world: int, local_rank: int, load_face_model) -> dict:
    from tqdm import tqdm

    t_start = time.perf_counter()
    device = _device(cfg, local_rank)
    is_main = rank == 0
    out = Path(cfg.out_dir)
    model = load_face_model(cfg.face_model, device=device)
    train_ds, val_ds = build_datasets(cfg, model)

    torch.manual_seed(cfg.seed)
    net = RNet(model.layout, cfg.backbone, cfg.width_mult, cfg.pretrained, cfg.input_size).to(
        device
    )
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    spe = steps_per_epoch(len(train_ds), cfg.batch_size, world)
    total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * spe
    milestones = sorted({max(1, round(m * spe)) for m in cfg.lr_milestones})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=cfg.lr_gamma)

    resume = _resume_path(cfg)
    start_step = load_checkpoint(resume, net, opt, sched) if resume is not None else 0
    step_fn = _Step(cfg, model, device)
    train_net: torch.nn.Module = net
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        train_net = torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)

    metrics = None
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        metrics = _MetricsCSV(out / "metrics.csv", start_step if resume is not None else None)
    bar = tqdm(
        total=total_steps,
        initial=start_step,
        disable=not (is_main and cfg.progress),
        desc="train",
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
                raise FaceReconError(f"training diverged at step {step} (loss {loss})")
            losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if metrics is not None and cfg.log_every and step % cfg.log_every == 0:
                row = {k: float(v.detach()) for k, v in parts.items()}
                row.update(step=step, epoch=epoch, split="train", loss=loss, lr=lr)
                metrics.write({**row, "seconds": time.perf_counter() - t0})
            if is_main and val_ds is not None and cfg.val_every and step % cfg.val_every == 0:
                tv = time.perf_counter()
                val_result = _validate(step_fn, net, val_ds, cfg)
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
                p = save_checkpoint(ckpt_dir / f"step_{step:08d}.pt", net, opt, sched, step, cfg)
                tmp = last_ckpt.with_name(f".last.pt.tmp{os.getpid()}")
                shutil.copyfile(p, tmp)
                os.replace(tmp, last_ckpt)
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
    weights = out / "rnet.pt"
    if is_main:
        save_checkpoint(last_ckpt, net, opt, sched, step, cfg)
        meta = {"step": step, "face_model": cfg.face_model, "train_config": cfg.to_dict()}
        save_rnet(net, weights, meta=meta)
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

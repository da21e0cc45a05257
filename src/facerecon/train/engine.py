"""The training engine of facerecon's networks (R-Net, C-Net): one loop, every run's plumbing.

A trainer is a :class:`NetSpec` (which net, its checkpoint format, its final weights file, and
:attr:`NetSpec.prepare`, which builds a run's datasets, net and step function as
:class:`RunParts`); :func:`train` does the rest. A step function (:class:`StepFn`) is the
forward + loss of one batch, shared by training and validation.

Run layout (``config.out_dir``)::

    config.yaml            the config of the run
    metrics.csv            step, epoch, split (train/val), loss, weighted terms, lr, seconds
    checkpoints/last.pt    model + optimizer + scheduler + RNG states + step (resume point)
    checkpoints/step_N.pt  every ``ckpt_every`` steps
    <spec.weights_file>    final weights (e.g. rnet.pt, cnet.pt)

Distributed: launched with ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the engine joins
a process group (nccl on CUDA, gloo on CPU), wraps the net in DistributedDataParallel and gives
every rank its own slice of each epoch's permutation; ``batch_size`` is per process. Only rank 0
writes files, shows progress and validates.

Determinism: the data order of epoch e is a permutation seeded by ``(seed, e)``, the
augmentation of item i in epoch e is seeded by ``(seed, e, i)`` (the datasets' ``set_epoch``),
and the net is built after ``torch.manual_seed(seed)``. A run resumed from a checkpoint
therefore takes exactly the steps of an uninterrupted run (identical losses on the same device
and thread count).

Checkpoints hold only tensors and plain containers (the RNG states converted), and are read
with ``torch.load(weights_only=True)``: a file that would need any other object to load, e.g.
a crafted pickle, is refused with a :class:`FaceReconError` and runs no code.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import math
import os
import pickle
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from facerecon.errors import FaceReconError
from facerecon.fileio import atomic_write
from facerecon.nets.weights_file import atomic_save
from facerecon.train.config import TrainConfig, save_config

__all__ = [
    "CKPT_VERSION",
    "CSV_FIELDS",
    "METRIC_TERMS",
    "NetSpec",
    "RunParts",
    "StepFn",
    "dist_env",
    "epoch_batches",
    "resume_path",
    "rng_states",
    "seeded_batches",
    "select_device",
    "set_rng_states",
    "steps_per_epoch",
    "train",
    "validate",
]

METRIC_TERMS = ("photo", "landmark", "perceptual", "coef", "tex", "light", "mask", "lm3d", "lm2d")
CSV_FIELDS = ("step", "epoch", "split", "loss", *METRIC_TERMS, "lr", "seconds")
#: Version in the checkpoint format tags. 2: RNG states as tensors and plain containers (read
#: with ``weights_only=True``); version-1 files held numpy RNG state and no longer load.
CKPT_VERSION = 2


# ============================================================================ contracts
class StepFn(Protocol):
    """Forward + loss of one batch: ``step(net, batch) -> (total, parts)``.

    ``net`` is the trainable module (wrapped in DistributedDataParallel while training under
    torchrun, bare and in eval mode during validation); ``batch`` is a DataLoader batch whose
    ``"image"`` has the batch axis first. ``total`` is the scalar loss (with gradient while
    training), ``parts`` maps :data:`METRIC_TERMS` names to scalar tensors (the logged terms).
    """

    def __call__(
        self, net: torch.nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


@dataclass
class RunParts:
    """What a trainer builds for one run, on the run's device.

    Attributes:
        train_set: training items (``len``, ``set_epoch(epoch)``, dict items with ``"image"``).
        val_set: validation items, or None (no validation).
        build_net: returns the trainable module; called right after ``torch.manual_seed(seed)``
            (the engine moves it to the device). It must have a ``config`` dataclass with a
            ``from_dict`` classmethod (checked against checkpoints).
        build_step: returns the :class:`StepFn`; called after the resume point is restored.
        weights_meta: ``meta`` of the final weights file (the engine puts ``"step"`` first).
    """

    train_set: Dataset
    val_set: Dataset | None
    build_net: Callable[[], torch.nn.Module]
    build_step: Callable[[], StepFn]
    weights_meta: dict[str, Any]


@dataclass(frozen=True)
class NetSpec:
    """One kind of trainable network, as the engine sees it.

    Attributes:
        kind: short name (``"rnet"``): checkpoints are tagged ``facerecon-<kind>-train-<N>``
            (:data:`CKPT_VERSION`) and hold the net's config under ``"<kind>_config"``; the final
            weights are ``<kind>.pt`` in ``out_dir``.
        label: the net with its article, in messages (``"an R-Net"``).
        save_weights: ``save_weights(net, path, meta=dict)`` writes the final weights file.
        prepare: ``prepare(config, face_model, device) -> RunParts`` for one run.
        progress: label of the progress bar.
        run_name: what diverges in the divergence error.
    """

    kind: str
    label: str
    save_weights: Callable[..., Any]
    prepare: Callable[[Any, Any, torch.device], RunParts]
    progress: str = "train"
    run_name: str = "training"

    @property
    def ckpt_format(self) -> str:
        """Format tag of the training checkpoints (``"facerecon-rnet-train-2"``)."""
        return f"facerecon-{self.kind}-train-{CKPT_VERSION}"

    @property
    def config_key(self) -> str:
        """Checkpoint key of the net's config dict (``"rnet_config"``)."""
        return f"{self.kind}_config"

    @property
    def weights_file(self) -> str:
        """Final weights file in ``out_dir`` (``"rnet.pt"``)."""
        return f"{self.kind}.pt"

    @property
    def name(self) -> str:
        """The net without article (``"R-Net"``)."""
        return self.label.split()[-1]

    def save_checkpoint(
        self,
        path: str | os.PathLike[str],
        net: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        step: int,
        config: TrainConfig,
    ) -> Path:
        """Write everything needed to continue training at ``step`` (atomically).

        The payload is ``{"format", "step", <config_key>, "model", "optimizer", "scheduler",
        "rng", "train_config"}``: tensors, numbers, strings and containers only.
        """
        raw = getattr(net, "module", net)
        payload = {
            "format": self.ckpt_format,
            "step": int(step),
            self.config_key: dataclasses.asdict(raw.config),
            "model": raw.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_states(),
            "train_config": config.to_dict(),
        }
        return atomic_save(payload, path)

    def load_checkpoint(
        self,
        path: str | os.PathLike[str],
        net: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
        restore_rng: bool = True,
    ) -> int:
        """Restore a :meth:`save_checkpoint` file into ``net`` (and optimizer, scheduler,
        RNGs); returns its step. Raises a one-line :class:`FaceReconError` when the file is
        unreadable, holds anything but tensors and plain containers, is of another format or
        is for another net configuration."""
        p = Path(path)
        try:
            payload = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            why = type(exc).__name__
            if isinstance(exc, pickle.UnpicklingError):
                why += (
                    " (it holds objects other than tensors and plain containers, which are "
                    f"never loaded; checkpoints older than {self.ckpt_format} cannot resume)"
                )
            raise FaceReconError(f"cannot read checkpoint {p}: {why}") from None
        if not isinstance(payload, dict) or payload.get("format") != self.ckpt_format:
            raise FaceReconError(f"{p} is not {self.label} training checkpoint")
        raw = getattr(net, "module", net)
        if type(raw.config).from_dict(payload[self.config_key]) != raw.config:
            raise FaceReconError(f"checkpoint {p} is for another {self.name} configuration")
        raw.load_state_dict(payload["model"])
        if optimizer is not None:
            optimizer.load_state_dict(payload["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(payload["scheduler"])
        if restore_rng:
            set_rng_states(payload["rng"])
        return int(payload["step"])


# ============================================================================ distributed
def dist_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (0, 1, 0 otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def select_device(want: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` (this process's
    ``cuda:<local_rank>``) or ``"cuda:N"``; a CUDA device becomes the current one."""
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FaceReconError("device 'cuda' requested but CUDA is not available")
        if want == "cuda":
            want = f"cuda:{local_rank}"
        torch.cuda.set_device(torch.device(want))
    return torch.device(want)


# ============================================================================ data order
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


def seeded_batches(
    ds: Dataset,
    batch_size: int,
    seed: int,
    start_step: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(epoch, batch)`` from optimizer step ``start_step`` on, forever: the batches of
    :func:`epoch_batches` (after ``ds.set_epoch(epoch)``), the first ``start_step`` skipped."""
    spe = steps_per_epoch(len(ds), batch_size, world_size)
    epoch, skip = divmod(start_step, spe)
    while True:
        ds.set_epoch(epoch)
        order = epoch_batches(len(ds), batch_size, seed, epoch, rank, world_size)[skip:]
        loader = DataLoader(ds, batch_sampler=order, num_workers=num_workers)
        for batch in loader:
            yield epoch, batch
        epoch, skip = epoch + 1, 0


# ============================================================================ checkpoints
def rng_states() -> dict[str, Any]:
    """torch, CUDA, numpy and Python RNG states as tensors, numbers and tuples (what
    ``torch.load(weights_only=True)`` reads)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }


def set_rng_states(s: dict[str, Any]) -> None:
    """Restore :func:`rng_states` (CUDA states only where CUDA is available)."""
    torch.set_rng_state(s["torch"])
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    random.setstate(s["python"])


def resume_path(cfg: TrainConfig) -> Path | None:
    """The checkpoint to resume from: ``cfg.resume`` (``"auto"``: ``last.pt`` of the run when
    present), or None; a named checkpoint that does not exist is an error."""
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
    """``metrics.csv`` writer (:data:`CSV_FIELDS`); on resume, drops rows after the resumed
    step."""

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
@torch.no_grad()
def validate(
    step_fn: StepFn, net: torch.nn.Module, ds: Dataset, batch_size: int, num_workers: int = 0
) -> dict[str, float]:
    """Means over ``ds`` (weighted by batch size) of the total (``"loss"``) and of each part,
    with ``net`` in eval mode (its mode is restored)."""
    was = net.training
    net.eval()
    sums: dict[str, float] = {}
    n = 0
    for batch in DataLoader(ds, batch_size=batch_size, num_workers=num_workers):
        total, parts = step_fn(net, batch)
        b = batch["image"].shape[0]
        sums["loss"] = sums.get("loss", 0.0) + float(total) * b
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v) * b
        n += b
    net.train(was)
    return {k: v / max(n, 1) for k, v in sums.items()}


def train(config: TrainConfig, spec: NetSpec) -> dict[str, Any]:
    """Train the net of ``spec`` as ``config`` says (see the module docstring for the files,
    DDP and determinism).

    Args:
        config: the run (a :class:`TrainConfig` or subclass); ``config.out_dir`` receives
            metrics, checkpoints and ``spec.weights_file``.
        spec: the net kind.

    Returns:
        ``{"start_step", "steps", "steps_per_epoch", "losses" (total per step of this process,
        this run only), "final_loss", "val" (last validation means or None), "weights" (path
        of the final weights), "checkpoint", "seconds", "world_size"}``.
    """
    rank, world, local_rank = dist_env()
    own_group = False
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if config.device != "cpu" and torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        own_group = True
    try:
        return _train(config, spec, rank, world, local_rank)
    finally:
        if own_group:
            dist.destroy_process_group()


def _due(every: int, step: int) -> bool:
    """An ``every``-steps event (log, validation, checkpoint) is due; ``every == 0``: never."""
    return bool(every) and step % every == 0


def _train(cfg: TrainConfig, spec: NetSpec, rank: int, world: int, local_rank: int) -> dict:
    from tqdm import tqdm

    from facerecon.morphable import load_face_model

    t_start = time.perf_counter()
    device = select_device(cfg.device, local_rank)
    is_main = rank == 0
    out = Path(cfg.out_dir)
    parts = spec.prepare(cfg, load_face_model(cfg.face_model, device=device), device)

    torch.manual_seed(cfg.seed)
    net = parts.build_net().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    spe = steps_per_epoch(len(parts.train_set), cfg.batch_size, world)
    total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * spe
    milestones = sorted({max(1, round(m * spe)) for m in cfg.lr_milestones})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=cfg.lr_gamma)

    resume = resume_path(cfg)
    start_step = spec.load_checkpoint(resume, net, opt, sched) if resume is not None else 0
    step_fn = parts.build_step()
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
        desc=spec.progress,
        unit="step",
    )
    losses: list[float] = []
    val_result = None
    ckpt_dir = out / "checkpoints"
    last_ckpt = ckpt_dir / "last.pt"
    train_net.train()
    step = start_step
    data = seeded_batches(
        parts.train_set, cfg.batch_size, cfg.seed, start_step, rank, world, cfg.num_workers
    )
    try:
        while step < total_steps:
            t0 = time.perf_counter()
            epoch, batch = next(data)
            lr = opt.param_groups[0]["lr"]
            total, terms = step_fn(train_net, batch)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            sched.step()
            step += 1
            loss = float(total.detach())
            if not math.isfinite(loss):
                raise FaceReconError(f"{spec.run_name} diverged at step {step} (loss {loss})")
            losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            row = {"step": step, "epoch": epoch, "lr": lr}
            if metrics is not None and _due(cfg.log_every, step):
                logged = {k: float(v.detach()) for k, v in terms.items()}
                seconds = time.perf_counter() - t0
                metrics.write({**logged, **row, "split": "train", "loss": loss, "seconds": seconds})
            if is_main and parts.val_set is not None and _due(cfg.val_every, step):
                tv = time.perf_counter()
                val_result = validate(step_fn, net, parts.val_set, cfg.batch_size, cfg.num_workers)
                if metrics is not None:
                    seconds = time.perf_counter() - tv
                    metrics.write({**val_result, **row, "split": "val", "seconds": seconds})
            if is_main and _due(cfg.ckpt_every, step):
                p = spec.save_checkpoint(
                    ckpt_dir / f"step_{step:08d}.pt", net, opt, sched, step, cfg
                )
                atomic_write(last_ckpt, functools.partial(shutil.copyfile, p))
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
    weights = out / spec.weights_file
    if is_main:
        spec.save_checkpoint(last_ckpt, net, opt, sched, step, cfg)
        spec.save_weights(net, weights, meta={"step": step, **parts.weights_meta})
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

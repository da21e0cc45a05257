"""``facerecon train``: command-line entry of R-Net training (also ``python -m
facerecon.train.cli``, e.g. under ``torchrun --nproc_per_node N``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from facerecon.errors import FaceReconError
from facerecon.train.config import ConfigError, TrainConfig, load_config

__all__ = ["build_parser", "config_from_args", "main_train"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="facerecon train",
        description="Train the R-Net coefficient regressor with the hybrid loss. "
        "Multi-GPU / multi-process: torchrun --nproc_per_node N -m facerecon.train.cli ...",
    )
    ap.add_argument("--config", help="YAML file with TrainConfig fields (see configs/)")
    ap.add_argument("--data", help="prepared folder (facerecon prepare) or 'synthetic'")
    ap.add_argument("--val-data", help="validation folder or 'synthetic'")
    ap.add_argument("--out", dest="out_dir", help="run folder (metrics.csv, checkpoints, rnet.pt)")
    ap.add_argument("--face-model", help="bfm-lite (default), bfm09, ict or a .npz path")
    ap.add_argument("--backbone", choices=("resnet50", "mobilenet_v2"))
    ap.add_argument("--batch-size", type=int, help="per process")
    ap.add_argument("--epochs", type=int)
    ap.add_argument(
        "--steps", dest="max_steps", type=int, help="optimizer steps (wins over epochs)"
    )
    ap.add_argument("--lr", type=float)
    ap.add_argument("--device", help="auto, cpu, cuda")
    ap.add_argument("--amp", choices=("none", "bf16"), help="bf16 autocast of the net on CUDA")
    ap.add_argument("--resume", help="checkpoint path, 'auto' (default) or 'none'")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--workers", dest="num_workers", type=int, help="DataLoader workers")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any field, YAML value; nested with dots (augment.flip=0, loss.w_photo=1.92)",
    )
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--print-config", action="store_true", help="print the config and exit")
    return ap


def _apply_override(d: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw else None
    *parents, leaf = key.strip().split(".")
    node = d
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {p} is not a section")
    node[leaf] = value


TRAIN_FLAGS = (
    "data", "val_data", "out_dir", "face_model", "backbone", "batch_size", "epochs",
    "max_steps", "lr", "device", "amp", "seed", "num_workers",
)  # fmt: skip


def config_dict_from_args(args: argparse.Namespace, cfg: Any, flags: Sequence[str]) -> dict:
    """``cfg`` as a dict with explicit ``flags``, ``--resume``, ``--quiet`` and ``--set``
    overrides applied (in that order); shared by every training command."""
    d = cfg.to_dict()
    for name in flags:
        value = getattr(args, name)
        if value is not None:
            d[name] = value
    if args.resume is not None:
        d["resume"] = None if args.resume.lower() == "none" else args.resume
    if args.quiet:
        d["progress"] = False
    for item in args.overrides:
        _apply_override(d, item)
    return d


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults <- ``--config`` file <- explicit flags <- ``--set`` overrides."""
    cfg = load_config(args.config) if args.config else TrainConfig()
    return TrainConfig.from_dict(config_dict_from_args(args, cfg, TRAIN_FLAGS))


def main_train(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, train, print a one-line summary; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        if args.print_config:
            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return 0
        from facerecon.train.loop import train_rnet

        res = train_rnet(cfg)
    except FaceReconError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if res.get("world_size", 1) == 1 or int(__import__("os").environ.get("RANK", "0")) == 0:
        final = res["final_loss"]
        loss = f"{final:.4f}" if final is not None else "n/a"
        print(
            f"trained steps {res['start_step']}..{res['steps']} in {res['seconds']:.1f} s, "
            f"last loss {loss}; weights: {res['weights']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main_train())

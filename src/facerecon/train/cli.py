"""``facerecon train [rnet|cnet]``: the command line of network training (R-Net: also
``python -m facerecon.train.cli``, e.g. under ``torchrun --nproc_per_node N``).

One parser builder (:func:`build_parser`), config assembly (:func:`config_from_args`) and entry
(:func:`run_command`) serve every net; a :class:`TrainCommand` says what differs (program name,
config class, extra flags, trainer). :data:`RNET_COMMAND` is R-Net training's;
``facerecon.train.cnet.CNET_COMMAND`` is C-Net training's.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from facerecon.errors import FaceReconError
from facerecon.train.config import ConfigError, TrainConfig, load_config
from facerecon.train.rnet import train_rnet

__all__ = [
    "RNET_COMMAND",
    "TRAIN_FLAGS",
    "TrainCommand",
    "build_parser",
    "config_dict_from_args",
    "config_from_args",
    "main_train",
    "run_command",
]

TRAIN_FLAGS = (
    "data", "val_data", "out_dir", "face_model", "backbone", "batch_size", "epochs",
    "max_steps", "lr", "device", "amp", "seed", "num_workers",
)  # fmt: skip


@dataclass(frozen=True)
class TrainCommand:
    """One training command.

    Attributes:
        prog, description: of its parser.
        config_type: :class:`TrainConfig` or a subclass; ``--config`` files are read as it.
        flags: config fields that plain flags set (``args.<field>``; None leaves the field).
        train: ``train(config) -> result dict`` (``facerecon.train.train_rnet``'s keys).
        trained: first words of the summary line (``"trained"``: "trained steps 0..5 ...").
        add_flags: adds the command's own flags to the common parser.
    """

    prog: str
    description: str
    config_type: type[TrainConfig]
    flags: tuple[str, ...]
    train: Callable[[Any], dict[str, Any]]
    trained: str = "trained"
    add_flags: Callable[[argparse.ArgumentParser], None] | None = None


RNET_COMMAND = TrainCommand(
    prog="facerecon train",
    description="Train the R-Net coefficient regressor with the hybrid loss. "
    "Multi-GPU / multi-process: torchrun --nproc_per_node N -m facerecon.train.cli ...",
    config_type=TrainConfig,
    flags=TRAIN_FLAGS,
    train=train_rnet,
)


def build_parser(command: TrainCommand = RNET_COMMAND) -> argparse.ArgumentParser:
    """The parser of ``command``: the flags of every training run plus its own."""
    ap = argparse.ArgumentParser(prog=command.prog, description=command.description)
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
    if command.add_flags is not None:
        command.add_flags(ap)
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


def config_from_args(args: argparse.Namespace, command: TrainCommand = RNET_COMMAND) -> TrainConfig:
    """Defaults <- ``--config`` file <- explicit flags <- ``--set`` overrides, as
    ``command.config_type``."""
    kind = command.config_type
    cfg = load_config(args.config, kind) if args.config else kind()
    return kind.from_dict(config_dict_from_args(args, cfg, command.flags))


def run_command(command: TrainCommand, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, train, print a one-line summary (rank 0); returns the exit code (1 with
    a one-line ``error:`` on stderr for a :class:`FaceReconError`)."""
    args = build_parser(command).parse_args(argv)
    try:
        cfg = config_from_args(args, command)
        if args.print_config:
            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return 0
        res = command.train(cfg)
    except FaceReconError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if res.get("world_size", 1) == 1 or int(os.environ.get("RANK", "0")) == 0:
        final = res["final_loss"]
        loss = f"{final:.4f}" if final is not None else "n/a"
        print(
            f"{command.trained} steps {res['start_step']}..{res['steps']} in "
            f"{res['seconds']:.1f} s, last loss {loss}; weights: {res['weights']}"
        )
    return 0


def main_train(argv: Sequence[str] | None = None) -> int:
    """``facerecon train [rnet]``: :func:`run_command` of :data:`RNET_COMMAND`."""
    return run_command(RNET_COMMAND, argv)


if __name__ == "__main__":
    sys.exit(main_train())

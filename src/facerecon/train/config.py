"""Configuration of R-Net training (dataclasses with YAML load/save).

Defaults follow the released Deep3DFaceRecon recipe where the paper is silent: Adam, lr 1e-4,
batch 32 per process, 20 epochs with the learning rate x0.2 at epoch 10, augmentation shift
±10 px, scale ±10 %, rotation ±10° and horizontal flip. The paper itself trains with batch 5 for
500K iterations (set ``batch_size: 5`` and ``max_steps: 500000``). Loss weights are those of
:class:`facerecon.losses.HybridLossConfig` (paper values; ``HybridLossConfig.released_code()``
for the code's).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from facerecon.data.augment import AugmentConfig
from facerecon.errors import FaceReconError
from facerecon.losses import HybridLossConfig

__all__ = ["AugmentConfig", "ConfigError", "TrainConfig", "load_config", "save_config"]

ConfigT = typing.TypeVar("ConfigT", bound="TrainConfig")


class ConfigError(FaceReconError):
    """A training configuration file or value is invalid."""


@dataclass
class TrainConfig:
    """Everything a training run needs; ``train_rnet(config)`` is a pure function of it.

    Attributes:
        data: folder written by ``facerecon prepare`` (npz per face, one folder per person), or
            ``"synthetic"`` (the synthetic face engine, ``synthetic_*`` below).
        val_data: like ``data`` for validation; None uses ``val_fraction`` of ``data``'s persons
            (prepared folders) or fresh identities (synthetic).
        val_fraction: share of persons held out when ``val_data`` is None (0 = no validation).
        out_dir: run folder: ``metrics.csv``, ``checkpoints/``, ``rnet.pt``, ``config.yaml``.
        face_model: name or path for ``facerecon.morphable.load_face_model``.
        backbone, width_mult, pretrained: see :class:`facerecon.nets.rnet.RNet`.
        input_size: side the crop is resized to before the net (224 = paper).
        render_size: side of the photometric render (224 = paper; smaller is faster).
        perceptual: include the face-recognition perceptual term.
        skin_attention: weigh the photometric loss by the skin attention (paper); False weighs
            every pixel of the rendered face region 1 (the Table-1 ablation row).
        batch_size: per process. epochs, max_steps: run length (``max_steps`` wins when set).
        lr, weight_decay: Adam. lr_milestones: epochs (fractions allowed) at which the learning
            rate is multiplied by ``lr_gamma``.
        val_every, ckpt_every, log_every: in optimizer steps (0 = never; a final checkpoint is
            always written).
        resume: checkpoint path, ``"auto"`` (``out_dir/checkpoints/last.pt`` when present) or None.
        seed: seeds initialisation, data order and augmentation (identical runs on one device).
        amp: ``"none"`` or ``"bf16"`` (autocast of the network on CUDA; ignored on CPU).
        rasterizer: renderer backend of the loss (``"torch"``, ``"nvdiffrast"``, ``"auto"``;
            see ``facerecon.render.rasterize``).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        num_workers: DataLoader workers. progress: tqdm bar on rank 0.
        synthetic_identities, synthetic_conditions, synthetic_image_size: synthetic data size.
    """

    data: str = "synthetic"
    val_data: str | None = None
    val_fraction: float = 0.05
    out_dir: str = "runs/rnet"
    face_model: str = "bfm-lite"
    backbone: Literal["resnet50", "mobilenet_v2"] = "resnet50"
    width_mult: float = 1.0
    pretrained: bool = False
    input_size: int = 224
    render_size: int = 224
    perceptual: bool = True
    skin_attention: bool = True
    batch_size: int = 32
    epochs: int = 20
    max_steps: int | None = None
    lr: float = 1e-4
    weight_decay: float = 0.0
    lr_milestones: list[float] = field(default_factory=lambda: [10.0])
    lr_gamma: float = 0.2
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: HybridLossConfig = field(default_factory=HybridLossConfig)
    val_every: int = 1000
    ckpt_every: int = 1000
    log_every: int = 1
    resume: str | None = "auto"
    seed: int = 0
    amp: Literal["none", "bf16"] = "none"
    rasterizer: Literal["torch", "nvdiffrast", "auto"] = "torch"
    device: str = "auto"
    num_workers: int = 0
    progress: bool = True
    synthetic_identities: int = 1000
    synthetic_conditions: int = 10
    synthetic_image_size: int = 256

    def __post_init__(self) -> None:
        if self.amp not in ("none", "bf16"):
            raise ConfigError(f"amp must be 'none' or 'bf16', got {self.amp!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.backbone not in ("resnet50", "mobilenet_v2"):
            raise ConfigError(f"backbone must be resnet50 or mobilenet_v2, got {self.backbone!r}")
        if self.rasterizer not in ("torch", "nvdiffrast", "auto"):
            raise ConfigError(
                f"rasterizer must be 'torch', 'nvdiffrast' or 'auto', got {self.rasterizer!r}"
            )
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[ConfigT], d: dict[str, Any]) -> ConfigT:
        """Build from a mapping of field values (nested dataclass fields as mappings)."""
        return _from_dict(cls, d, "config")


def _from_dict(cls: type, d: Any, where: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}")
    kwargs = {}
    for key, value in d.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            value = _from_dict(hint, value, f"{where}.{key}")
        elif _accepts(hint, float) and not isinstance(value, bool):
            value = _to_float(value, f"{where}.{key}")
        elif _accepts(hint, int) and value is not None and not _is_int(value):
            raise ConfigError(f"{where}.{key}: expected an integer, got {value!r}")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _accepts(hint: Any, kind: type) -> bool:
    if hint is kind:
        return True
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return kind in typing.get_args(hint)
    return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _to_float(value: Any, where: str) -> Any:
    """Numbers and numeric strings (YAML 1.1 reads ``3e-4`` as a string) to float."""
    if value is None or isinstance(value, float):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None


def load_config(
    path: str | os.PathLike[str], config_type: type[ConfigT] = TrainConfig, **overrides: Any
) -> ConfigT:
    """Read a YAML file of ``config_type``'s fields and apply keyword ``overrides`` on top.

    Args:
        path: YAML mapping with any subset of the fields (nested ``augment`` and ``loss``
            mappings).
        config_type: :class:`TrainConfig` or a subclass (e.g. C-Net training's
            ``CNetTrainConfig``).
        overrides: field values that win over the file's.

    Returns:
        ``config_type.from_dict(file mapping | overrides)``.

    Raises:
        ConfigError: the file is missing, not YAML, not a mapping, or has bad keys or values.
    """
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
    return config_type.from_dict(d)


def save_config(config: TrainConfig, path: str | os.PathLike[str]) -> Path:
    """Write every field as YAML (readable by :func:`load_config`)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return p

"""The one file format of facerecon's network weights (R-Net, C-Net).

A file is a ``torch.save``d dict ``{"format", "config", "state_dict", "meta"}``; the format tag
names the network and version, ``config`` rebuilds it, ``meta`` records how it was trained.
:func:`save_weights` and :func:`load_weights` are what ``save_rnet``/``load_rnet`` and
``save_cnet``/``load_cnet`` do for their class.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from facerecon.errors import ModelFileError
from facerecon.fileio import atomic_write

NetT = TypeVar("NetT", bound=nn.Module)


def unwrap(net: nn.Module, cls: type[NetT]) -> NetT:
    """The network inside a ``DistributedDataParallel`` wrapper (or ``net`` itself); raises
    ``TypeError`` unless it is a ``cls``."""
    net = getattr(net, "module", net)
    if not isinstance(net, cls):
        raise TypeError(f"expected {cls.__name__}, got {type(net).__name__}")
    return net


def weights_payload(
    net: nn.Module, file_format: str, dtype: torch.dtype | None, meta: dict[str, Any] | None
) -> dict:
    """CPU copy of ``net``'s state (floating tensors cast to ``dtype`` when given) + config."""
    state = {}
    for k, v in net.state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        state[k] = v.clone()
    return {
        "format": file_format,
        "config": asdict(net.config),
        "state_dict": state,
        "meta": dict(meta or {}),
    }


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` through a temporary file (:func:`facerecon.fileio.atomic_write`), so a
    crash never leaves half a file."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_weights(
    net: nn.Module,
    cls: type[nn.Module],
    path: str | os.PathLike[str],
    file_format: str,
    dtype: torch.dtype | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Save ``net`` (a ``cls``, possibly DDP-wrapped) as a ``file_format`` weights file:
    floating tensors as held (``dtype=None``) or cast to ``dtype`` (float16 for distribution)."""
    return atomic_save(weights_payload(unwrap(net, cls), file_format, dtype, meta), path)


def load_weights(
    path: str | os.PathLike[str],
    file_format: str,
    what: str,
    build: Callable[[dict[str, Any]], NetT],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> NetT:
    """Rebuild a network from a weights file: ``build(payload["config"])``, then the state with
    floating tensors cast to ``dtype`` (half-precision files are upcast), strictly; returned on
    ``device`` in eval mode. One-line :class:`ModelFileError` naming ``what`` when unusable."""
    payload = read_weights_file(path, file_format, what)
    net = build(payload["config"])
    state = {
        k: v.to(dtype) if v.is_floating_point() else v for k, v in payload["state_dict"].items()
    }
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{what} weights in {path} do not match their config") from exc
    return net.to(device=device, dtype=dtype).eval()


def read_weights_file(path: str | os.PathLike[str], file_format: str, what: str) -> dict[str, Any]:
    """The raw payload of a weights file of ``file_format``; one-line :class:`ModelFileError`
    naming ``what`` (e.g. "R-Net") when it is missing, unreadable or of another format."""
    p = Path(path)
    if p.is_dir():
        raise ModelFileError(f"{what} weights {p} is a folder; give the .pt file")
    if not p.is_file():
        raise ModelFileError(f"{what} weights not found: {p}")
    if p.stat().st_size == 0:
        raise ModelFileError(f"{what} weights {p} is an empty file")
    try:
        with warnings.catch_warnings():  # torch's own advice would leak past the one line
            warnings.simplefilter("ignore")
            payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = {
            "EOFError": "truncated",
            "UnpicklingError": "not a torch file, or corrupt",
            "RuntimeError": "not a torch file, or corrupt",
        }.get(type(exc).__name__, type(exc).__name__)
        raise ModelFileError(
            f"cannot read {what} weights {p}: {reason} (expected a .pt written by facerecon)"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise ModelFileError(f"{p} is not a facerecon {what} file ({file_format})")
    return payload

"""The one file format of facerecon's network weights (R-Net, C-Net).

A file is a ``torch.save``d dict ``{"format", "config", "state_dict", "meta"}``; the format tag
names the network and version, ``config`` rebuilds it, ``meta`` records how it was trained.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facerecon.errors import ModelFileError
from facerecon.fileio import atomic_write


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


def read_weights_file(path: str | os.PathLike[str], file_format: str, what: str) -> dict[str, Any]:
    """The raw payload of a weights file of ``file_format``; one-line :class:`ModelFileError`
    naming ``what`` (e.g. "R-Net") when it is missing, unreadable or of another format."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{what} weights not found: {p}")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"cannot read {what} weights {p}: {type(exc).__name__}") from exc
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise ModelFileError(f"{p} is not a facerecon {what} file ({file_format})")
    return payload

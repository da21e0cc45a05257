"""Joining the summaries of a run split into shards (``reconstruct --shard I/N``).

A shard writes ``summary.shard-I-of-N.json`` (:func:`facerecon.pipeline.summary_name`): its
written faces (each with ``index``, the photo's position in the whole run's inputs), its
failed inputs, its per-stage seconds and ``"shard": [I, N]``. :func:`merge_summaries` checks
that the parts are the N shards of one run, each once, and joins them in input order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from facerecon.errors import FaceReconError

__all__ = ["SHARD_GLOB", "find_shard_summaries", "load_parts", "merge_summaries"]

SHARD_GLOB = "summary.shard-*-of-*.json"


def find_shard_summaries(folders: Iterable[str | Path]) -> list[Path]:
    """Every ``summary.shard-I-of-N.json`` in ``folders`` (sorted by name per folder)."""
    found: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise FaceReconError(f"{folder}: no such folder")
        found.extend(sorted(folder.glob(SHARD_GLOB)))
    if not found:
        names = ", ".join(str(f) for f in folders)
        raise FaceReconError(f"no {SHARD_GLOB} in {names} (run reconstruct --shard I/N first)")
    return found


def load_parts(paths: Iterable[Path]) -> list[dict]:
    """The shard summaries at ``paths``; a one-line error for one that cannot be read."""
    parts = []
    for p in paths:
        try:
            data = json.loads(Path(p).read_text())
        except (OSError, ValueError) as exc:
            raise FaceReconError(f"{p}: not a readable shard summary ({exc})") from None
        if not isinstance(data, dict) or "shard" not in data:
            raise FaceReconError(f"{p}: not a shard summary (no 'shard' field)")
        parts.append(data)
    return parts


def merge_summaries(parts: list[dict], strict: bool = True) -> dict:
    """One summary from the N shard summaries of a run.

    Returns:
        ``{"written": [...] in input order, "failed": [[path, reason], ...] sorted by path,
        "stages": {stage: seconds summed}, "photos": summed, "seconds": the slowest
        shard's}``.

    Raises:
        FaceReconError: the parts are not the N shards of one run, each exactly once (with
            ``strict=False`` shards may be missing: an interrupted run's parts).
    """
    if not parts:
        if not strict:
            return {"written": [], "failed": [], "stages": {}, "photos": 0, "seconds": 0.0}
        raise FaceReconError("no shard summaries to merge")
    counts = {int(p["shard"][1]) for p in parts}
    if len(counts) != 1:
        raise FaceReconError(f"shard summaries of different splits ({sorted(counts)} parts)")
    (n,) = counts
    seen = sorted(int(p["shard"][0]) for p in parts)
    if seen != list(range(n)) and (strict or len(set(seen)) != len(seen)):
        missing = sorted(set(range(n)) - set(seen))
        twice = sorted({i for i in seen if seen.count(i) > 1})
        what = f"shard {twice[0]}/{n} twice" if twice else f"missing shard {missing[0]}/{n}"
        raise FaceReconError(f"cannot merge: {what}")
    written = sorted(
        (w for p in parts for w in p.get("written", [])), key=lambda w: w.get("index", 0)
    )
    failed = sorted((list(f) for p in parts for f in p.get("failed", [])), key=lambda f: f[0])
    stages: dict[str, float] = {}
    for p in parts:
        for k, v in p.get("stages", {}).items():
            stages[k] = round(stages.get(k, 0.0) + float(v), 4)
    return {
        "written": written,
        "failed": failed,
        "stages": stages,
        "photos": sum(int(p.get("photos", 0)) for p in parts),
        "seconds": max(float(p.get("seconds", 0.0)) for p in parts),
    }

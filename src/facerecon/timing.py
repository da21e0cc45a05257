"""Wall time per named stage of the reconstruction pipeline.

One :class:`StageTimes` per photo (and one per run, their sum) holds seconds by stage; the
stages of ``facerecon reconstruct`` are :data:`STAGES`, in the order data flows:

- ``load``: decode the photo;
- ``detect``: face boxes; ``landmarks``: the 68 points (and a second detector's opinion);
- ``align``: the 224 crop;
- ``network``: a network's forward pass (R-Net, PGN, DF-MVR); ``fit``: the analysis-by-synthesis
  fit (``auto``'s refinement too);
- ``texture``: the UV texture of the mesh; ``write``: rendering the overlay and writing files.

``summary.json`` records each photo's stages and the run's totals; ``--profile`` prints them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

__all__ = ["STAGES", "StageTimes", "format_profile"]

STAGES = ("load", "detect", "landmarks", "align", "network", "fit", "texture", "write")


class StageTimes:
    """Seconds accumulated per stage name.

    Example:
        >>> t = StageTimes()
        >>> with t.timed("load"):
        ...     pass
        >>> t.add("fit", 1.5)
        >>> t.seconds["fit"]
        1.5
    """

    def __init__(self, seconds: Mapping[str, float] | None = None):
        self.seconds: dict[str, float] = dict(seconds or {})

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + float(seconds)

    def merge(self, other: StageTimes | Mapping[str, float]) -> StageTimes:
        """Add another's seconds to this one's; returns self."""
        items = other.seconds if isinstance(other, StageTimes) else other
        for stage, s in items.items():
            self.add(stage, s)
        return self

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the wall time of the ``with`` block to ``stage`` (also when it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    def total(self) -> float:
        return sum(self.seconds.values())

    def as_dict(self, digits: int = 4) -> dict[str, float]:
        """Stages in :data:`STAGES` order (others after), rounded."""
        order = [s for s in STAGES if s in self.seconds]
        order += sorted(s for s in self.seconds if s not in STAGES)
        return {s: round(self.seconds[s], digits) for s in order}


def format_profile(total: StageTimes, photos: int, wall: float) -> str:
    """The ``--profile`` table: per stage the summed seconds, the mean per photo and the
    share of the summed stage time; then the run's wall time and photos per second.

    The stages' sum can exceed the wall time when stages overlap (a background reader or
    writer thread) and falls short of it by start-up and the report.
    """
    n = max(photos, 1)
    busy = max(total.total(), 1e-12)
    lines = [f"{'stage':<10} {'seconds':>9} {'per photo':>10} {'share':>6}"]
    for stage, s in total.as_dict(digits=6).items():
        lines.append(f"{stage:<10} {s:9.3f} {1000 * s / n:8.1f}ms {100 * s / busy:5.1f}%")
    lines.append(f"{'stages':<10} {total.total():9.3f} {1000 * total.total() / n:8.1f}ms")
    rate = photos / wall if wall > 0 else 0.0
    lines.append(f"wall {wall:.2f} s for {photos} photo(s): {rate:.2f} photos/s")
    return "\n".join(lines)

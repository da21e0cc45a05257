"""Errors raised by :mod:`facerecon.evaluate` (one-line messages, see ``docs/DESIGN.md``)."""

from __future__ import annotations

from facerecon.errors import FaceReconError


class EvaluationError(FaceReconError):
    """Evaluation input is unusable: bad mesh arrays, unreadable files, no prediction/GT pairs."""

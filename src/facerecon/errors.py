"""User-facing errors: each carries a one-line message the CLI prints as ``error: ...``."""

from __future__ import annotations


class FaceReconError(Exception):
    """Base of every error a user can cause (bad input, missing files, wrong layout)."""


class ImageError(FaceReconError):
    """An input image cannot be read or is unusable."""


class NoFaceError(FaceReconError):
    """No face was found in an image."""


class ModelFileError(FaceReconError):
    """A face model, weights or model file is missing or malformed."""


class OutputExistsError(FaceReconError):
    """An output would be overwritten without ``--overwrite``."""

"""facerecon.train: R-Net training with the hybrid loss (Deng et al. 2019).

Public API::

    TrainConfig, load_config, save_config                    # config.py
    train_rnet(config) -> dict                               # loop.py
    rnet_terms, rnet_loss                                    # objective.py
    AugmentConfig, FLIP_68, augment_sample                   # facerecon.data.augment
    main_train(argv) -> int                                  # cli.py (``facerecon train``)
"""

from collections.abc import Sequence

from facerecon.data.augment import FLIP_68, AugmentConfig, augment_sample
from facerecon.train.config import ConfigError, TrainConfig, load_config, save_config
from facerecon.train.loop import load_checkpoint, save_checkpoint, train_rnet
from facerecon.train.objective import rnet_loss, rnet_terms


def main_train(argv: Sequence[str] | None = None) -> int:
    """``facerecon train`` (see :mod:`facerecon.train.cli`; imported lazily so that
    ``python -m facerecon.train.cli`` runs without a double import)."""
    from facerecon.train.cli import main_train as _main_train

    return _main_train(argv)


__all__ = [
    "FLIP_68",
    "AugmentConfig",
    "ConfigError",
    "TrainConfig",
    "augment_sample",
    "load_checkpoint",
    "load_config",
    "main_train",
    "rnet_loss",
    "rnet_terms",
    "save_checkpoint",
    "save_config",
    "train_rnet",
]

"""facerecon.train: R-Net and C-Net training with the hybrid loss (Deng et al. 2019).

Public API::

    TrainConfig, AugmentConfig, load_config, save_config     # config.py (AugmentConfig:
                                                             #   facerecon.data.augment)
    train_rnet(config) -> dict                               # rnet.py
    load_checkpoint, save_checkpoint                         # rnet.py (R-Net checkpoints)
    rnet_terms, rnet_loss                                    # objective.py
    FLIP_68, augment_sample                                  # facerecon.data.augment
    main_train(argv) -> int                                  # cli.py (``facerecon train``)

C-Net training is :mod:`facerecon.train.cnet`; both trainers run on the one training engine
:mod:`facerecon.train.engine`.
"""

from collections.abc import Sequence

from facerecon.data.augment import FLIP_68, AugmentConfig, augment_sample
from facerecon.train.config import ConfigError, TrainConfig, load_config, save_config
from facerecon.train.objective import rnet_loss, rnet_terms
from facerecon.train.rnet import load_checkpoint, save_checkpoint, train_rnet


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

"""facerecon.skin: colour-based skin probability and the paper's skin attention.

A naive-Bayes classifier with one Gaussian mixture for skin and one for non-skin colours
(fitted by ``scripts/fit_skin.py`` on the UCI skin data, shipped as ``skin_gmm.npz``).
"""

from facerecon.skin.classifier import is_grayscale, skin_attention, skin_probability
from facerecon.skin.model import SkinModel, load_skin_model
from facerecon.skin.region import landmark_face_region

__all__ = [
    "SkinModel",
    "is_grayscale",
    "landmark_face_region",
    "load_skin_model",
    "skin_attention",
    "skin_probability",
]

"""Semantic face regions shared by face models, parse masks and losses.

One label set serves three places: per-vertex labels of a face model, parse masks
computed from photo landmarks, and parse masks rasterized from a render.
Left and right are the *subject's* (anatomical) sides: the subject's right eye is
iBUG points 36..41, which appear on the image's left in a frontal photo.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Region(IntEnum):
    """Parse / vertex labels. ``OTHER`` is used only on model vertices (e.g. face border)."""

    BACKGROUND = 0
    SKIN = 1
    LEFT_BROW = 2
    RIGHT_BROW = 3
    LEFT_EYE = 4
    RIGHT_EYE = 5
    NOSE = 6
    UPPER_LIP = 7
    LOWER_LIP = 8
    INNER_MOUTH = 9
    OTHER = 10


NUM_PARSE_CLASSES = 10  # BACKGROUND..INNER_MOUTH; OTHER never appears in a parse mask

# Regions that count as "facial features" for the DF-MVR weight map (254 of 255).
FEATURE_REGIONS = (
    Region.LEFT_BROW,
    Region.RIGHT_BROW,
    Region.LEFT_EYE,
    Region.RIGHT_EYE,
    Region.NOSE,
    Region.UPPER_LIP,
    Region.LOWER_LIP,
    Region.INNER_MOUTH,
)

# 68-point iBUG index groups (0-based).
IBUG_JAW = tuple(range(0, 17))
IBUG_RIGHT_BROW = tuple(range(17, 22))  # subject's right, image left
IBUG_LEFT_BROW = tuple(range(22, 27))
IBUG_NOSE = tuple(range(27, 36))
IBUG_RIGHT_EYE = tuple(range(36, 42))
IBUG_LEFT_EYE = tuple(range(42, 48))
IBUG_OUTER_LIP = tuple(range(48, 60))
IBUG_INNER_LIP = tuple(range(60, 68))

# Five alignment points from the 68 (paper's preprocessing): two eye centres, nose tip,
# two mouth corners, in image-left-to-right order for the eyes and mouth corners.
FIVE_POINT_GROUPS = ((36, 39), (42, 45), (30,), (48,), (54,))


#: 68-point (iBUG 300-W) index permutation under a horizontal flip: after mirroring the image,
#: ``lm_flipped = mirrored_lm[FLIP_68]`` keeps point i on the same facial feature.
FLIP_68 = np.array(
    [
        *range(16, -1, -1),  # jaw 0..16
        *range(26, 21, -1),  # right brow 17..21 <- left brow 26..22
        *range(21, 16, -1),  # left brow 22..26 <- 17..21 reversed
        *(27, 28, 29, 30),  # nose ridge
        *(35, 34, 33, 32, 31),  # nostrils
        *(45, 44, 43, 42, 47, 46),  # right eye <- left eye
        *(39, 38, 37, 36, 41, 40),  # left eye <- right eye
        *(54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55),  # outer mouth
        *(64, 63, 62, 61, 60, 67, 66, 65),  # inner mouth
    ],
    dtype=np.int64,
)

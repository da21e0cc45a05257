"""facerecon.detect: photo loading, face detection, 68 landmarks, alignment, parse masks."""

from .align import (
    DEFAULT_TEMPLATE_224,
    AlignedFace,
    CropTransform,
    align,
    align_batch,
    crop_to_original,
    five_points,
    template_from_model,
)
from .faces import (
    DEFAULT_DETECTOR,
    DETECTOR_CHOICES,
    VIEWS_DETECTOR,
    DetectorConfig,
    Face,
    FaceDetector,
    FallbackDetector,
    detect,
    detect_one,
    detector_for,
    get_detector,
    make_detector,
    preload,
)
from .image_io import load_image, to_rgb_uint8
from .parsing import dfmvr_weight_map, one_hot, parse_from_landmarks, parse_from_render

__all__ = [
    "DEFAULT_DETECTOR",
    "DEFAULT_TEMPLATE_224",
    "DETECTOR_CHOICES",
    "VIEWS_DETECTOR",
    "AlignedFace",
    "CropTransform",
    "DetectorConfig",
    "Face",
    "FaceDetector",
    "FallbackDetector",
    "align",
    "align_batch",
    "crop_to_original",
    "detect",
    "detect_one",
    "detector_for",
    "dfmvr_weight_map",
    "five_points",
    "get_detector",
    "load_image",
    "make_detector",
    "one_hot",
    "parse_from_landmarks",
    "parse_from_render",
    "preload",
    "template_from_model",
    "to_rgb_uint8",
]

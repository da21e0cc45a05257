"""facerecon: weakly-supervised 3D face reconstruction.

Data flows one way: image -> detect -> align -> net or fit -> coefficients -> mesh -> export.
See docs/DESIGN.md for the conventions every module shares.
"""

__version__ = "0.1.0"

__all__ = ["ReconstructOptions", "Reconstruction", "__version__", "reconstruct"]

# The public API, loaded on first use (``import facerecon`` stays free of torch):
#   facerecon.reconstruct(images, method=..., ...) -> list[facerecon.Reconstruction]
_API = {"reconstruct", "Reconstruction", "ReconstructOptions"}


def __getattr__(name: str):
    if name in _API:
        from facerecon import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'facerecon' has no attribute {name!r}")

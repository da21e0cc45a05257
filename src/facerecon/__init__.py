"""facerecon: weakly-supervised 3D face reconstruction.

Data flows one way: image -> detect -> align -> net or fit -> coefficients -> mesh -> export.
See docs/DESIGN.md for the conventions every module shares.
"""

__version__ = "0.1.0"

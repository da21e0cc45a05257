"""Configuration of analysis-by-synthesis fitting."""

from __future__ import annotations

from dataclasses import dataclass, field

from facerecon.losses import HybridLossConfig


@dataclass
class StageConfig:
    """One optimisation stage: how many Adam steps, at which render size, with which terms."""

    iters: int
    size: int = 224
    perceptual: bool = False
    photometric: bool = True
    # parameters this stage leaves as they are (e.g. ("id_coeff", "exp_coeff"): the photo
    # refines pose, light and albedo only)
    frozen: tuple[str, ...] = ()


@dataclass
class FitConfig:
    """Analysis-by-synthesis fitting of one photo or of an image set.

    Stage 0 fits pose, identity and expression to the 68 landmarks alone (cheap: only the 68
    landmark vertices are evaluated). Then the full hybrid loss runs coarse-to-fine: ``coarse``
    renders at a reduced size, ``fine`` at 224 and adds the perceptual term.

    Learning rates are per parameter group (Adam). Units: angles in radians, trans in scene units
    (1 unit = 100 mm), coefficients ~ N(0, 1).
    """

    landmark_iters: int = 120
    coarse: StageConfig = field(default_factory=lambda: StageConfig(iters=50, size=112))
    fine: StageConfig = field(default_factory=lambda: StageConfig(iters=25, perceptual=True))
    loss: HybridLossConfig = field(default_factory=HybridLossConfig)
    lr_angles: float = 2e-2
    lr_trans: float = 1e-2
    lr_id: float = 5e-2
    lr_exp: float = 5e-2
    lr_tex: float = 5e-2
    lr_gamma: float = 3e-2
    lr_decay: float = 0.3  # learning rate factor reached at the end of each stage (cosine)
    shared_identity: bool = False  # image sets: one id_coeff for all images
    # Jaw landmarks follow the silhouette (fit.contour); on the faces_68pt photos (fast config)
    # landmark NME went 9.4 -> 9.2 % (35-degree yaw), 4.1 -> 4.1 %, 8.3 -> 8.0 %.
    contour_landmarks: bool = True
    # Which detector's landmark definition (facerecon.fit.landmarks): its calibrated surface
    # points and noise when a calibration ships for the model, else the model's vertices;
    # "auto": the detector named by FitTarget.detector
    landmark_detector: str | None = None
    # "paper": weight 20 on the nose ridge and inner mouth, 1 elsewhere; "sigma": the
    # calibration's per-landmark noise, (2 px / sigma_k)^2 (falls back to "paper" without one)
    landmark_weighting: str = "paper"
    # > 0: Cauchy-robust landmark residuals, c^2 log(1 + r^2 / c^2); c = this times each
    # point's calibrated sigma ("sigma" weighting), else in crop pixels
    landmark_robust: float = 0.0
    # facerecon.render.rasterize backend: "torch" (any device), "nvdiffrast" (CUDA, needs the
    # package) or "auto" (nvdiffrast when importable and the tensors are on CUDA, else torch)
    rasterizer: str = "torch"

    @classmethod
    def fast(cls) -> FitConfig:
        """Fewer steps and no perceptual term: for tests and previews."""
        return cls(
            landmark_iters=80,
            coarse=StageConfig(iters=30, size=112),
            fine=StageConfig(iters=10, perceptual=False),
        )

    @classmethod
    def refine(cls, loss: HybridLossConfig | None = None) -> FitConfig:
        """A few steps from a network's estimate (``--method auto``): a short landmark stage
        (pose first; it re-seats a pose the net got wrong on an unfamiliar photo), then the
        hybrid loss. ``loss``: the weights the net was trained with (default: paper's), so the
        refinement keeps optimising the objective the estimate came from.
        """
        return cls(
            landmark_iters=45,
            coarse=StageConfig(iters=20, size=112),
            fine=StageConfig(iters=10, perceptual=True),
            loss=loss or HybridLossConfig(),
            lr_decay=0.1,
        )

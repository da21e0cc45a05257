"""Configuration of analysis-by-synthesis fitting."""

from __future__ import annotations

import dataclasses
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
    # False: the photometric term sees the shape as a constant (it still moves pose, light and
    # albedo), so only the stage's other terms move the shape (e.g. the multi-view fit's
    # cross-view term, ``HybridLossConfig.extra["cross_view"]``)
    photo_shape: bool = True
    # < 1: the stage renders the model decimated to about this fraction of its vertices
    # (:func:`facerecon.morphable.decimate.coarse_model`; the landmarks stay on the full model)
    mesh_fraction: float = 1.0


#: the shape coefficients (``StageConfig.frozen=SHAPE``: a photometric stage that refines pose,
#: light and albedo only, the default before the photo-detail renders)
SHAPE = ("id_coeff", "exp_coeff")


def calibrated_loss() -> HybridLossConfig:
    """The fit's loss weights: the paper's, with the identity and expression priors set on
    photo-like renders (bfm-lite identities of another seed than the benchmarks', 50 images,
    |yaw| <= 60; posed-shape error as a fraction of the mean face's, calibrated dlib landmarks
    alone: alpha/beta 0.5/3 -> 0.96, 1/1 -> 0.96, 1/3 -> 0.94, 1/10 -> 0.93, 2/3 -> 0.93;
    dlib + MediaPipe: 1/3 -> 0.90, 2/3 -> 0.90): ``alpha = 2``, ``beta = 3`` (paper 1, 0.8)."""
    return HybridLossConfig(alpha=2.0, beta=3.0)


#: ``auto``'s refinement of single photos holds identity and expression to the prior this many
#: times harder than :func:`calibrated_loss` (alpha 8, beta 12; ``FitConfig.single_prior_scale``).
#: Those weights were set on unoccluded renders; on the engine's default renders (occluders
#: with probability 0.3, blur, noise, JPEG), an occluder over the mouth or jaw makes the
#: fallback detector invent the hidden points, and the refinement followed them: 26 of 90
#: renders of seeds 2019 / 2020 / 2027 had an occluder over more than 2 % of the photo, and
#: on them the refinement went from 0.92 mm (R-Net) to 1.05 (average face 0.95), while on
#: the 64 clear ones it gained (0.88 -> 0.83, average face 0.93). Posed shape x the average
#: face, prior x1 -> x4 (x4 centred on the R-Net's estimate instead, ``prior_centre="init"``):
#: tuning seeds 2020 (32 renders, |yaw| <= 45) 0.955 -> 0.910 (0.914), 2027 (29, |yaw| <= 60)
#: 0.869 -> 0.862 (0.866); the held-out benchmark's seed 2019 (29) 1.030 -> 0.948 (0.917);
#: x2: 2019 0.976; x8 2019 0.950. On clear renders the stronger prior costs little (2020
#: 0.809 -> 0.819 mm, 2027 0.785 -> 0.794), on occluded ones it gains most (2020 1.236 ->
#: 1.002, 2027 0.994 -> 0.936). Image sets keep the fit's prior: their evidence adds up over
#: the photos (held-out sets, ``auto --set`` joint refine 0.733 mm with x1, 0.758 with x4,
#: average face 0.781). But on the realistic benchmark's bfm-lite renders (seed 2026, |yaw| <=
#: 60; 2026-12-07 06:28 / 06:44) x4 read 1.09 / 1.02 mm posed / neutral against 1.020 / 0.957
#: with x1 (average face 1.26 / 1.13): it costs there about what it gains held out. Open.
REFINE_PRIOR_SCALE = 4.0

#: photometric steps (at 112 px, on the coarse mesh) of ``auto``'s refinement, after its
#: landmark stage (:meth:`FitConfig.refine`)
REFINE_COARSE_ITERS = 60

#: fraction of the model's vertices the 112 px photometric steps of ``auto``'s refinement
#: render (``StageConfig.mesh_fraction``; :func:`facerecon.morphable.decimate.coarse_model`:
#: bfm-lite's 15,204 vertices -> 5,044, 29,907 triangles -> 9,789; the landmark terms stay on
#: the full model). At 112 px the full mesh has more vertices than the face has pixels; on
#: the coarse one a step on a batch of 8 costs about 0.52 of a full-mesh step (78 against 150
#: ms, one thread; on one photo, where fixed costs dominate, 31 against 36 ms, two threads), its
#: renders differ from the full mesh's by 0.3 % of intensity on average, and the time saved
#: buys more steps. Posed / neutral shape x the average face on the engine's default renders,
#: tuning seeds 2020 (32 renders, |yaw| <= 45) / 2027 (29, |yaw| <= 60), 2026-12-07:
#: ``auto`` 30 steps on the full mesh (before) 0.903 / 0.970 and 0.840 / 0.902; 30 coarse
#: 0.911 / 0.975 (2020); 50 coarse 0.895 / 0.962 (2020); 60 coarse 0.895 / 0.959 and 0.825 /
#: 0.900 (shipped); 60 at 0.25 0.888 / 0.953 and 0.829 / 0.906; 80 at 0.25 0.828 / 0.900
#: (2027). The held-out benchmark (seed 2019): 0.853 -> 0.838 mm posed, 0.730 -> 0.718
#: neutral. The fit keeps the full mesh: 120 coarse steps in place of its 75 full ones read
#: 0.928 / 0.976 and 0.857 / 0.930 on the tuning seeds (against 0.957 / 1.016 and 0.846 /
#: 0.907; 75 coarse 0.944 / 1.011 and 0.854 / 0.917) but 0.966 mm posed held out against
#: 0.920, and 7.12 % landmark NME on ``faces_68pt`` against 6.96.
COARSE_MESH_FRACTION = 0.33


@dataclass
class FitConfig:
    """Analysis-by-synthesis fitting of one photo or of an image set.

    Stage 0 fits pose, identity and expression to the 68 landmarks alone (cheap: only the 68
    landmark vertices are evaluated). Then the hybrid loss runs coarse-to-fine: ``coarse`` renders
    at a reduced size, ``fine`` at 224. The default is 75 steps at 112 px on the full mesh (the
    coarse mesh did not help the fit: :data:`COARSE_MESH_FRACTION`) and no 224 px stage, in place of
    50 + 25 steps with a 224 px stage: on the engine's default renders (occluders, blur, noise,
    JPEG; posed / neutral shape x the average face), tuning seed 2020 (32 renders, |yaw| <= 45) the
    former 50 + 25 steps read 0.986x / 1.055x, 50 + 0 0.989x / 1.040x, 75 + 0 0.957x / 1.016x; seed
    2027 (29, |yaw| <= 60) 0.855x / 0.923x, 0.847x / 0.903x and 0.846x / 0.907x (2026-12-07), at
    0.8x the former stages' time (a 224 px step costs about 1.8 112 px steps). The multi-view fits
    keep the former stages, which they were measured with (:meth:`two_stage`).

    The defaults are the noise-aware fit: the landmarks of each detector at their calibrated
    surface points with their calibrated, yaw-dependent noise (``landmark_detector="auto"``,
    ``landmark_weighting="sigma"``), Cauchy-robust beyond 2.5 sigma, identity / expression
    priors 2x / 3.75x the paper's, and photometric stages that move every parameter, the shape
    included, as in the paper. Measured on photo-like bfm-lite renders whose texture is the
    model's albedo times a photo's detail (``SynthConfig(albedo="photo-detail")``: the shading
    is the true shape's; seed 7, 23 renders, |yaw| <= 45, neutral / posed shape as a multiple
    of the average face): the photometric stages moving the shape 0.92x / 0.85x, kept off it
    (``frozen=SHAPE``, the former default) 0.95x / 0.90x; on the hand-labelled photos the
    paper's loss, which moves the shape, lands nearest the hand-placed points. On renders
    whose texture is a whole photo of someone else (``albedo="photo"``: that person's shading
    baked in) moving the shape costs instead (1.06x / 1.00x against 0.95x / 0.91x): a term
    to watch, in BENCHMARKS.md "Identity evidence". :meth:`paper` is the paper's hybrid loss
    (every term on every parameter, the perceptual one included, the paper's weights).

    Learning rates are per parameter group (Adam). Units: angles in radians, trans in scene units
    (1 unit = 100 mm), coefficients ~ N(0, 1).
    """

    landmark_iters: int = 120
    coarse: StageConfig = field(default_factory=lambda: StageConfig(iters=75, size=112))
    fine: StageConfig = field(default_factory=lambda: StageConfig(iters=0))
    loss: HybridLossConfig = field(default_factory=lambda: calibrated_loss())
    lr_angles: float = 2e-2
    lr_trans: float = 1e-2
    lr_id: float = 5e-2
    lr_exp: float = 5e-2
    lr_tex: float = 5e-2
    lr_gamma: float = 3e-2
    lr_decay: float = 0.3  # learning rate factor reached at the end of each stage (cosine)
    shared_identity: bool = False  # image sets: one id_coeff for all images
    # simultaneous views of one face (multi-view fit): one exp_coeff for all images too
    shared_expression: bool = False
    # prior of shared coefficients (fit.core.prior_weights): "mean" holds a shared identity to
    # the prior as one image would be; "map" divides its weight by the images sharing it (the
    # multi-view fit's setting: on photo-like bfm-lite triples, 4 per spread, 3 views at +-30
    # yaw 0.938 -> 0.917 mm, 2 views 0.955 -> 0.942; at +-60 unchanged, 1.01 -> 1.00)
    shared_prior: str = "mean"
    # Centre of the identity / expression prior: "zero" (the model's mean) or "init" (the
    # starting estimate, e.g. the R-Net's for ``auto``: N(init, Sigma) with the weights
    # init_prior x (alpha, beta), i.e. the net's error as a fraction of the prior's spread).
    # Measured for ``auto`` (photo-detail renders, seed 7, 23 renders, neutral / posed x the
    # average face): "zero" 0.875x / 0.818x, "init" with (1, 1) 0.897x / 0.833x, with (4, 4)
    # 0.944x / 0.882x: the shipped R-Net's identity is no better than the mean face there
    # (1.03x / 1.00x), so holding the fit to it costs.
    prior_centre: str = "zero"
    init_prior: tuple[float, float] = (1.0, 1.0)
    # Jaw landmarks follow the silhouette (fit.contour); on the faces_68pt photos (fast config)
    # landmark NME went 9.4 -> 9.2 % (35-degree yaw), 4.1 -> 4.1 %, 8.3 -> 8.0 %.
    contour_landmarks: bool = True
    # Which detector's landmark definition (facerecon.fit.landmarks): its calibrated surface
    # points and noise when a calibration ships for the model, else the model's vertices;
    # "auto": the detector named by FitTarget.detector
    landmark_detector: str | None = "auto"
    # "paper": weight 20 on the nose ridge and inner mouth, 1 elsewhere; "sigma": the
    # calibration's per-landmark noise, (2 px / sigma_k)^2 (falls back to "paper" without one)
    landmark_weighting: str = "sigma"
    # > 0: Cauchy-robust landmark residuals, c^2 log(1 + r^2 / c^2); c = this times each
    # point's calibrated sigma ("sigma" weighting), else in crop pixels
    landmark_robust: float = 2.5
    # Cap (degrees) on the yaw at which the calibrated noise is read: the calibration comes
    # from renders, where the detectors' jaw points degrade with yaw faster than on photos
    # (None: the calibration's own yaw bins)
    landmark_sigma_max_yaw: float | None = None
    # Past the calibration's end yaw bins (their centres, +-50 degrees: faces of 40-60), each
    # point's noise times 1 + this x (degrees past) / 10 (LandmarkSpec.sigma_at): the bins
    # average faces up to 60 degrees, and beyond ~50 the detectors break down (on a real scan
    # rendered at +-60, dlib's points were 28-108 % of the eye distance off against 9-12 % at
    # +-30), where the clamped calibration trusts them as at 50. 0 (clamped) everywhere:
    # for the multi-view fits at +-60 (3 views, posed shape x the average face) growth 1 gained
    # on the tuning triples (seed 7, 5 found of 6: bfm-lite mvr-auto 0.847x -> 0.816x, growth
    # 3 0.796x; mvfit 0.886x -> 0.854x, 3 0.845x; ICT within 0.002x) but not on the held-out
    # ones (seed 2026, 4 per model, multi-view benchmark run 2026-12-07 08:49 with growth 1:
    # bfm-lite mvfit 0.95 mm, mvr-auto 1.02, ICT 2.31 and 2.31, against 0.945, 1.01, 2.30
    # and 2.30 at 00:00 without).
    landmark_sigma_growth: float = 0.0
    # facerecon.render.rasterize backend: "torch" (any device), "nvdiffrast" (CUDA, needs the
    # package) or "auto" (nvdiffrast when importable and the tensors are on CUDA, else torch)
    rasterizer: str = "torch"
    # identity / expression prior weights times this for fits of single photos (no identity
    # shared by two images or more; :func:`facerecon.fit.core.prior_weights`): 1 for the fit,
    # REFINE_PRIOR_SCALE for ``auto``'s refinement (:meth:`refine`)
    single_prior_scale: float = 1.0
    # > 0, for fits of single photos from a starting estimate (``init``, e.g. the R-Net's):
    # each detected landmark's weight (each detector's) times its agreement with where that
    # estimate puts the detector's point, 1 / (1 + (d / (s * eye distance))^2) with s this
    # value (:func:`facerecon.fit.landmarks.agreement_weights`): a mouth a detector invents
    # under a hand disagrees with the net, which sees the whole face. 0: off, the default
    # everywhere. On 44 engine renders of seed 2020 (occluders drawn with probability 0.7) the
    # distance to the R-Net's point tells the detected points more than 10 % of the eye
    # distance off from the others with an AUC of 0.87 (the distance to MediaPipe's point
    # 0.85, the photo-vs-render residual 0.48). For ``auto`` (posed / neutral shape x the
    # average face; tuning seeds 2020, 32 renders, |yaw| <= 45, and 2027, 29, |yaw| <= 60):
    # the shipped prior x4 without it 0.910 / 0.979 and 0.862 / 0.913; prior x2 with s = 0.07
    # 0.884 / 0.964 and 0.855 / 0.920 (x1 with 0.07 0.890 / 0.968 and 0.860 / 0.930; x2 with
    # 0.10 0.890 / 0.967 and 0.859 / 0.916). On the held-out benchmark (seed 2019, 29 renders)
    # x2 with 0.07 read posed 0.862 mm (x4 without: 0.858) and neutral 0.754 (0.732; average
    # face 0.930 / 0.781), and on the hand-labelled photos its landmark NME 8.07 % (7.58):
    # no gain where it counts, so ``auto`` keeps x4 and no weights (2026-12-07).
    single_agreement: float = 0.0

    @classmethod
    def paper(cls) -> FitConfig:
        """The paper's hybrid loss and weights (Deng et al. 2019): the model's landmark
        vertices with weight 20 on the nose ridge and inner mouth, no robustness, and every
        term -- photometric, landmarks, perceptual, priors -- on every parameter."""
        return cls(
            coarse=StageConfig(iters=50, size=112),
            fine=StageConfig(iters=25, perceptual=True),
            loss=HybridLossConfig(),
            landmark_detector=None,
            landmark_weighting="paper",
            landmark_robust=0.0,
        )

    @classmethod
    def two_stage(cls) -> FitConfig:
        """The default with the former photometric stages, 50 steps at 112 px then 25 at 224, on
        the full mesh: the multi-view fit's (``mvfit``, and the ``set-fit`` row of the
        multi-view benchmark), measured with them."""
        return cls(coarse=StageConfig(iters=50, size=112), fine=StageConfig(iters=25))

    @classmethod
    def fast(cls) -> FitConfig:
        """Fewer steps: for tests and previews."""
        return cls(
            landmark_iters=80,
            coarse=StageConfig(iters=30, size=112),
            fine=StageConfig(iters=10),
        )

    def photometric_frozen(self, names: tuple[str, ...]) -> FitConfig:
        """This config with both photometric stages leaving ``names`` as they are (e.g.
        :data:`SHAPE`: the shape stays the landmark stage's)."""
        return dataclasses.replace(
            self,
            coarse=dataclasses.replace(self.coarse, frozen=names),
            fine=dataclasses.replace(self.fine, frozen=names),
        )

    def video(self, temporal: float = 1e-4) -> FitConfig:
        """This config for a batch of consecutive video frames: one identity for the batch and
        the acceleration of expression, rotation (degrees) and translation (mm) penalised with
        weight ``temporal`` (:func:`facerecon.losses.temporal_smoothness`). On 16 frames of a
        synthetic clip turning to 59 degrees (MediaPipe-tracked landmarks, fast config) the
        median rotation error was 3.0 degrees frame by frame, 3.5 as an image set, 2.3 with
        this weight at 1e-4, 2.8 at 1e-5 and 32.7 at 1e-3 (the penalty then holds the head
        still at its start)."""
        loss = dataclasses.replace(self.loss, extra={**self.loss.extra, "temporal": temporal})
        return dataclasses.replace(self, loss=loss, shared_identity=True)

    @classmethod
    def refine(
        cls,
        loss: HybridLossConfig | None = None,
        prior_scale: float = REFINE_PRIOR_SCALE,
        agreement: float = 0.0,
        fine: bool = False,
    ) -> FitConfig:
        """From a network's estimate (``--method auto``): the landmark stage (pose first; it
        re-seats a pose the net got wrong on an unfamiliar photo; 120 steps as the fit's: on
        photo-like bfm-lite renders, seed 7, 23 images, neutral-shape error 0.907 -> 0.874 mm
        against 45 steps, mean face 0.956), then a short photometric stage at 112 px that moves
        the shape too, all with the noise-aware defaults (the R-Net's identity moves as far as
        the landmarks' and pixels' evidence carries it against the calibrated prior;
        photo-detail renders, seed 7, 23 renders, neutral / posed x the average face: 0.875x /
        0.818x, with the shape frozen in the photometric stages 0.952x / 0.901x).

        The photometric refinement is :data:`REFINE_COARSE_ITERS` steps at 112 px on the coarse mesh
        (:data:`COARSE_MESH_FRACTION`, where this choice is measured) and no 224 px stage
        (``fine=False``). Before the coarse mesh it was 30 steps on the full mesh; the figures below
        are of that mesh. With ``fine=True`` it is the former 20 steps at 112 px and 10 at 224 on
        the full mesh (the multi-view refinement's, which was measured so:
        :func:`facerecon.methods.multiview.mvr_refine_config`). A 224 px step costs about 1.8 112 px
        steps, and they did not help: on the engine's default renders (occluders, blur, noise, JPEG;
        posed / neutral shape x the average face), tuning seed 2020 (32 renders, |yaw| <= 45) 20 +
        10 steps 0.910x / 0.979x, 30 + 0 0.903x / 0.970x; seed 2027 (29, |yaw| <= 60) 0.864x /
        0.913x and 0.840x / 0.902x (2026-12-07). Steps at 112 px alone, seeds 2020 / 2027, posed: 20
        steps 0.911x / 0.845x, 24 0.908x / 0.844x, 30 0.903x / 0.840x, 40 0.893x / 0.828x (at the
        former stages' cost); 30 at 96 px 0.899x / 0.836x (barely cheaper: the per-vertex work
        dominates); 20 + 10 with the 10 at 160 px 0.905x / 0.851x. 30 keeps most of the gain at
        0.79x the former stages' time (a step on a batch of 8 1080p photos, one thread: 110 ms at
        112 px, 196 ms at 224).

        For single photos the identity and expression prior is ``prior_scale`` times the
        loss's (:data:`REFINE_PRIOR_SCALE`; 1: the fit's, as the multi-view refinement was
        measured with); a shared identity (``--set``) keeps the loss's. ``agreement > 0``:
        single photos also weigh each landmark by its agreement with the net's estimate
        (``single_agreement``; off by default, see there for what it measured).
        ``loss``: other weights (e.g. those the net was trained with,
        :func:`facerecon.nets.rnet.training_loss_config`).
        """
        if fine:
            coarse = StageConfig(iters=20, size=112)
        else:
            coarse = StageConfig(
                iters=REFINE_COARSE_ITERS, size=112, mesh_fraction=COARSE_MESH_FRACTION
            )
        return cls(
            landmark_iters=120,
            coarse=coarse,
            fine=StageConfig(iters=10 if fine else 0),
            loss=loss or calibrated_loss(),
            single_prior_scale=prior_scale,
            single_agreement=agreement,
            lr_decay=0.1,
        )

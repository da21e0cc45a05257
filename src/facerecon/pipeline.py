"""The main job, end to end: photos -> detected, aligned faces -> coefficients -> files.

Data flows one way: ``load_image`` -> ``detect`` -> ``align`` -> ``fit`` -> mesh -> export.
The CLI parses arguments and calls :func:`run`; nothing here prints except through the
``progress`` callback, so the same code serves scripts and notebooks.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from facerecon.errors import FaceReconError, ImageError
from facerecon.io.paths import check_outputs_free, prepare_out_dir

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}
SUMMARY_NAME = "summary.json"
T = TypeVar("T")


@dataclass
class ReconstructOptions:
    """What ``facerecon reconstruct`` does; every CLI flag maps to one field."""

    out_dir: Path = Path("facerecon_out")
    model: str = "bfm-lite"
    # fit | rnet | auto (R-Net estimate refined by a few fitting steps); None: auto when R-Net
    # weights are given or ship for the model, fit otherwise (see resolve_options)
    method: str | None = None
    weights: Path | None = None  # R-Net weights for rnet / auto (None: the shipped ones)
    cnet: Path | None = None  # C-Net weights: --set aggregates identities with confidences
    shipped: bool = True  # use the weights shipped for the model when none are given
    strategy: str = "s4"  # aggregation strategy for --set with a C-Net (facerecon.aggregate)
    device: str = "cpu"
    as_set: bool = False
    # the inputs are 1-3 simultaneous views of one face (--views): one identity and one
    # expression, per-view pose and light; implies as_set
    views: bool = False
    mvr_weights: Path | None = None  # DF-MVR weights for mvr / mvr-auto (None: the shipped)
    pgn_weights: Path | None = None  # PGN weights for pgn (None: the shipped)
    all_faces: bool = False
    overwrite: bool = False
    detector: str = "auto"  # facerecon.detect.DETECTOR_CHOICES; auto: dlib, then fallbacks
    perceptual: bool = True
    fast: bool = False
    report: bool = True
    rasterizer: str = "torch"  # facerecon.render.rasterize backend: torch, nvdiffrast or auto
    # NAME_texture.png (OBJ/MTL, GLB): "photo", the person's own, baked from the photo(s)
    # (facerecon.texture.photo_texture), or "model", the fitted model albedo
    texture: str = "photo"
    texture_size: int = 1024  # texels per side
    texture_delight: bool = True  # photo texture divided by the fitted SH light (False: as lit)


@dataclass
class PreparedFace:
    """One detected face, aligned to the 224 crop."""

    source: Path | None  # None: an array given to reconstruct()
    name: str
    photo: np.ndarray  # (H, W, 3) uint8, the original photo
    aligned: object  # facerecon.detect.align.AlignedFace
    detected_lm68: np.ndarray  # (68, 2) original-photo pixels
    detector: str = ""  # which detector found it (facerecon.detect.Face.detector)
    alt_lm68: dict = field(default_factory=dict)  # other detectors' landmarks, photo pixels


@dataclass
class Reconstruction:
    """One reconstructed face: what :func:`reconstruct` returns and what the writers export.

    Attributes:
        name: output stem (file stem, ``NAME_faceK`` for further faces of a photo).
        source: the photo's path, or None for an array given to :func:`reconstruct`.
        method, model: method and face-model names.
        coeffs: ``(layout.size,)`` coefficient vector; :attr:`parts` splits it by name.
        vertices: ``(N, 3)`` mm, model space, identity + expression (the posed mesh).
        neutral_vertices: ``(N, 3)`` mm, identity alone (expression 0).
        albedo: ``(N, 3)`` the model's albedo (0..1 before clamping, as rendered).
        triangles: ``(F, 3)`` int64.
        lm68: ``(68, 2)`` the reconstruction's landmarks in photo pixels.
        detected_lm68: ``(68, 2)`` the detector's landmarks in photo pixels.
        crop_to_original: ``(2, 3)`` affine map from 224-crop pixels to photo pixels.
        confidence: the method's per-image confidence (C-Net with ``--set``) or None.
        seconds: time of the reconstruction (per face for a set).
    """

    name: str
    source: Path | None
    method: str
    model: str
    coeffs: np.ndarray
    parts: dict[str, np.ndarray]
    vertices: np.ndarray
    neutral_vertices: np.ndarray
    albedo: np.ndarray
    triangles: np.ndarray
    lm68: np.ndarray
    detected_lm68: np.ndarray
    crop_to_original: np.ndarray
    confidence: float | None = None
    seconds: float = 0.0

    @property
    def landmark_error_px(self) -> float:
        """Mean distance of :attr:`lm68` to :attr:`detected_lm68` (photo pixels)."""
        return float(np.linalg.norm(self.lm68 - self.detected_lm68, axis=1).mean())


@dataclass
class RunSummary:
    """What a run produced: written faces, failed inputs (path, message), the report."""

    written: list[dict] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    report: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


def collect_inputs(paths: Iterable[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, folders (non-recursive, image suffixes only) and globs.

    Returns:
        (image paths in a stable order, [(argument, message)] for arguments matching nothing).
    """
    found: list[Path] = []
    missing: list[tuple[str, str]] = []
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            items = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
            if not items:
                missing.append((arg, f"folder {arg} holds no images"))
            found.extend(items)
        elif p.exists():
            found.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(arg))
            if matches:
                found.extend(m for m in matches if m.is_file())
            else:
                missing.append((arg, f"{arg}: no such file, folder or glob match"))
    unique: list[Path] = []
    seen: set[Path] = set()
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, missing


def unique_names(paths: list[Path]) -> list[str]:
    """Output stems: the file stem, disambiguated with the parent folder (then a counter)."""
    names: list[str] = []
    used: set[str] = set()
    for p in paths:
        name = p.stem
        if name in used:
            name = f"{p.parent.name}_{p.stem}"
        base, k = name, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        names.append(name)
    return names


def output_paths(out_dir: Path, name: str) -> dict[str, Path]:
    return {
        "obj": out_dir / f"{name}.obj",
        "neutral": out_dir / f"{name}_neutral.obj",
        "glb": out_dir / f"{name}.glb",
        "npz": out_dir / f"{name}.npz",
        "overlay": out_dir / f"{name}_overlay.png",
        "landmarks": out_dir / f"{name}_landmarks.json",
        "mtl": out_dir / f"{name}.mtl",
        "texture": out_dir / f"{name}_texture.png",
    }


def output_suffixes() -> tuple[str, ...]:
    """What :func:`output_paths` appends to a face name: ``(".obj", ..., "_texture.png")``."""
    return tuple(p.name[1:] for p in output_paths(Path(), "X").values())


def _face_output_pattern(name: str) -> re.Pattern[str]:
    """File names ``NAME_faceK<suffix>`` (also ``NAME_faceK_J<suffix>``) of ``--all-faces``."""
    suffixes = "|".join(re.escape(s) for s in output_suffixes())
    return re.compile(re.escape(name) + r"_face\d+(?:_\d+)?(?:" + suffixes + ")")


def existing_outputs(out_dir: Path, names: list[str], all_faces: bool, report: bool) -> list[Path]:
    """Files already in ``out_dir`` that a run over ``names`` could write, in run order.

    Per name its :func:`output_paths`; with ``all_faces`` also every ``NAME_faceK`` output
    (the number of faces is known only after detection); then ``summary.json`` and, with
    ``report``, ``report.html`` (and a ``viewer.js`` that differs from ours).
    """
    from facerecon.io import report_conflicts

    if not out_dir.is_dir():
        return []
    present = sorted(p.name for p in out_dir.iterdir())
    found: list[Path] = []
    for name in names:
        found.extend(p for p in output_paths(out_dir, name).values() if p.exists())
        if all_faces:
            pattern = _face_output_pattern(name)
            found.extend(out_dir / n for n in present if pattern.fullmatch(n))
    if (out_dir / SUMMARY_NAME).exists():
        found.append(out_dir / SUMMARY_NAME)
    if report:
        found.extend(report_conflicts(out_dir))
    return found


def one_line(exc: BaseException) -> str:
    """``"TypeName: first line of the message"`` for an unexpected exception."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def run_stage(stage: str, fn: Callable[..., T], *args, **kwargs) -> T:
    """Call ``fn``; an unexpected exception becomes a one-line :class:`FaceReconError`
    ``"<stage> failed: <Type>: <message>"`` (user-facing errors pass through unchanged), so a
    batch can report it for this input and go on."""
    try:
        return fn(*args, **kwargs)
    except FaceReconError:
        raise
    except Exception as exc:
        raise FaceReconError(f"{stage} failed: {one_line(exc)}") from exc


def claim_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``... when taken; the result is added to ``taken``."""
    base, k = name, 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def prepare_image(path: Path, name: str, detector, all_faces: bool) -> list[PreparedFace]:
    """Load, detect and align the faces of one photo (largest only unless ``all_faces``).

    Every stage's failure is a one-line :class:`FaceReconError` naming the stage.
    """
    from facerecon.detect import load_image

    photo = run_stage("loading", load_image, path)
    return prepare_photo(photo, path, name, detector, all_faces)


def prepare_photo(
    photo: np.ndarray, source: Path | None, name: str, detector, all_faces: bool
) -> list[PreparedFace]:
    """Detect and align the faces of a loaded photo ``(H, W, 3)`` uint8 RGB; ``source`` names
    it in messages (None: an array)."""
    from facerecon.detect import align
    from facerecon.errors import NoFaceError

    faces = run_stage("face detection", detector.detect, photo, all_faces=all_faces)
    if not faces:
        raise NoFaceError(f"{source if source is not None else name}: no face found")
    prepared = []
    for k, face in enumerate(faces):
        aligned = run_stage("alignment", align, photo, face.lm68)
        face_name = name if len(faces) == 1 else f"{name}_face{k}"
        prepared.append(
            PreparedFace(
                source, face_name, photo, aligned, face.lm68, face.detector, dict(face.alt_lm68)
            )
        )
    return prepared


class Reconstructor:
    """Holds the face model and the method (:mod:`facerecon.methods`); reconstructs batches of
    prepared faces and writes their outputs."""

    def __init__(self, options: ReconstructOptions):
        from facerecon.methods import build_method
        from facerecon.morphable import load_face_model

        self.options = options = resolve_options(options)
        if options.device.startswith("cuda") and not torch.cuda.is_available():
            raise FaceReconError("--device cuda asked for, but torch sees no CUDA device")
        self.device = torch.device(options.device)
        self.model = load_face_model(options.model, device=self.device)
        if options.texture not in ("photo", "model"):
            raise FaceReconError(f"--texture must be photo or model, got {options.texture!r}")
        self._chart = None
        # the blended texture of the faces of a set (write_joint_fit sets it while it writes)
        self.shared_texture = None
        self.method = build_method(options.method, method_spec(options), self.model)

    def estimate(self, faces: list[PreparedFace], shared_identity: bool):
        """The method's :class:`facerecon.methods.Estimate` for a batch of faces (one
        identity for all when ``shared_identity``)."""
        from facerecon.methods import crops_target

        detector = tuple(f.detector or None for f in faces)
        alt = [{k: f.aligned.transform.to_crop(v) for k, v in f.alt_lm68.items()} for f in faces]
        target = crops_target([f.aligned for f in faces], self.model.mean_shape, detector, alt)
        return self.method(target, shared_identity)

    def reconstruction(
        self,
        face: PreparedFace,
        coeffs: torch.Tensor,
        seconds: float = 0.0,
        confidence: float | None = None,
    ) -> Reconstruction:
        """The mesh, landmarks and coefficients of ``coeffs (layout.size,)`` for ``face``."""
        from facerecon.fit import fitted_landmarks
        from facerecon.render import CameraConfig

        model = self.model
        parts = model.layout.split(coeffs[None])
        with torch.no_grad():
            vertices, albedo = model(parts["id_coeff"], parts["exp_coeff"], parts["tex_coeff"])
            neutral = model.shape(parts["id_coeff"], torch.zeros_like(parts["exp_coeff"]))
            lm_crop = fitted_landmarks(
                model, vertices, parts["angles"], parts["trans"], CameraConfig()
            )
        transform = face.aligned.transform
        return Reconstruction(
            name=face.name,
            source=face.source,
            method=self.options.method,
            model=model.name,
            coeffs=coeffs.cpu().numpy(),
            parts={k: v[0].cpu().numpy() for k, v in parts.items()},
            vertices=vertices[0].cpu().numpy(),
            neutral_vertices=neutral[0].cpu().numpy(),
            albedo=albedo[0].cpu().numpy(),
            triangles=model.triangles.cpu().numpy(),
            lm68=transform.to_original(lm_crop[0].cpu().numpy()),
            detected_lm68=face.detected_lm68,
            crop_to_original=np.asarray(transform.matrix_to_original),
            confidence=confidence,
            seconds=seconds,
        )

    def chart(self):
        """The model's :class:`facerecon.texture.UVChart` (built on first use, then shared by
        every face: UV, texel maps, mirror map)."""
        if self._chart is None:
            from facerecon.texture import UVChart

            self._chart = UVChart.of_model(self.model)
        return self._chart

    def uv(self) -> np.ndarray:
        """``(N, 2)`` texture coordinates of the model (its one-to-one chart), the same for
        every face it makes."""
        return self.chart().uv

    def photo_texture(self, faces: list[PreparedFace], recs: list[Reconstruction]):
        """The :class:`facerecon.texture.FaceTexture` of one face from its photo(s): one
        ``(face, rec)`` per photo (a set's or views' photos are blended)."""
        from facerecon.texture import PhotoView, TextureConfig, photo_texture

        opts = self.options
        cfg = TextureConfig(size=opts.texture_size, delight=opts.texture_delight)
        views = []
        for f, r in zip(faces, recs, strict=True):
            p = r.parts
            views.append(PhotoView(f.photo, r.vertices, p["angles"], p["trans"], p["gamma"],
                                   r.crop_to_original))  # fmt: skip
        albedo = np.mean([np.clip(r.albedo, 0.0, 1.0) for r in recs], axis=0)
        return photo_texture(self.chart(), views, albedo, cfg)

    def write(self, face: PreparedFace, rec: Reconstruction) -> dict:
        """Write every per-face output of ``rec``; returns a summary dict for the report."""
        from facerecon.io import (
            draw_landmarks,
            overlay_image,
            png_bytes,
            save_coefficients,
            save_png,
            warp_to_original,
            write_glb,
            write_landmarks_json,
            write_obj,
        )
        from facerecon.render import CameraConfig, render

        opts = self.options
        paths = output_paths(opts.out_dir, face.name)
        model = self.model
        parts = {k: torch.from_numpy(v)[None].to(self.device) for k, v in rec.parts.items()}
        with torch.no_grad():
            out = render(
                torch.from_numpy(rec.vertices)[None].to(self.device),
                torch.from_numpy(rec.albedo)[None].to(self.device),
                model.triangles,
                parts["angles"],
                parts["trans"],
                parts["gamma"],
                CameraConfig(),
            )
        tri, verts, colors = rec.triangles, rec.vertices, np.clip(rec.albedo, 0.0, 1.0)
        chart, uv = self.chart(), self.uv()
        # OBJ: vertex colours (MeshLab) plus a UV texture map (Blender, Unity ignore vertex
        # colours); GLB: the texture as its material's base colour (photo), or vertex colours
        if opts.texture == "photo":
            tex = self.shared_texture or self.photo_texture([face], [rec])
            texture = png_bytes(tex.image)
            colors = chart.vertex_colors(tex.image)
            write_glb(paths["glb"], verts, tri, uv=uv, texture=texture, overwrite=opts.overwrite)
            texture_info = {"texture": "photo", "texture_seen": round(tex.seen, 3),
                            "texture_seconds": round(tex.seconds, 3)}  # fmt: skip
            gain = tex.gain
        else:
            texture = png_bytes(chart.bake_colors(colors, opts.texture_size))
            write_glb(paths["glb"], verts, tri, colors=colors, overwrite=opts.overwrite)
            texture_info = {"texture": "model"}
            gain = None
        write_obj(paths["obj"], verts, tri, colors=colors, uv=uv, texture=texture,
                  overwrite=opts.overwrite)  # fmt: skip
        # identity with expression 0 (what NoW-style benchmarks score), same colours and UVs
        write_obj(paths["neutral"], rec.neutral_vertices, tri, colors=colors, uv=uv,
                  overwrite=opts.overwrite)  # fmt: skip

        h, w = face.photo.shape[:2]
        render_img = out.image[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy()
        mask = out.mask[0, 0].float().cpu().numpy()
        render_orig = warp_to_original(render_img, rec.crop_to_original, (h, w))
        mask_orig = warp_to_original(mask, rec.crop_to_original, (h, w))
        overlay = overlay_image(face.photo, render_orig, mask_orig)
        overlay = draw_landmarks(overlay, face.detected_lm68, color=(0, 255, 0))
        overlay = draw_landmarks(overlay, rec.lm68, color=(255, 0, 0))
        save_png(paths["overlay"], overlay, overwrite=opts.overwrite)

        arrays = dict(rec.parts)
        arrays["coeffs"] = rec.coeffs
        arrays["crop_to_original"] = rec.crop_to_original
        arrays["neutral_vertices"] = rec.neutral_vertices.astype(np.float32)
        if gain is not None:  # NAME_texture.png / 255 / texture_gain: the albedo (model units)
            arrays["texture_gain"] = np.asarray(gain, np.float32)
        # npz keys are the file format (users' files keep loading): landmarks68 holds lm68 pixels
        arrays["landmarks68"] = rec.lm68
        arrays["detected_landmarks68"] = face.detected_lm68
        meta = {
            "detector": face.detector,
            "model": model.name,
            "layout": list(model.layout.sizes),
            "method": opts.method,
            "source": str(face.source),
            "units": "vertices mm (model space); trans in scene units (1 = 100 mm)",
            "seconds": rec.seconds,
        }
        save_coefficients(paths["npz"], arrays, meta, overwrite=opts.overwrite)
        err = rec.landmark_error_px
        write_landmarks_json(
            paths["landmarks"],
            rec.lm68,
            extra={"detected": face.detected_lm68.tolist(), "mean_error_px": err},
            overwrite=opts.overwrite,
        )
        return {
            "name": face.name,
            "confidence": rec.confidence,
            "source": str(face.source),
            "paths": {k: str(v) for k, v in paths.items()},
            "seconds": rec.seconds,
            "landmark_error_px": err,
            "detector": face.detector,
            **texture_info,
        }


def reconstruct(
    images,
    method: str | None = None,
    *,
    model: str = "bfm-lite",
    as_set: bool = False,
    all_faces: bool = False,
    detector: str = "auto",
    device: str = "cpu",
    weights: str | Path | None = None,
    cnet: str | Path | None = None,
    fast: bool = False,
    shipped: bool = True,
    views: bool = False,
    mvr_weights: str | Path | None = None,
) -> list[Reconstruction]:
    """Reconstruct the faces of photos in memory (the Python API; the CLI adds the files).

    Args:
        images: a path, an ``(H, W, 3)`` uint8 RGB array (gray, RGBA, 16-bit are coerced), or
            a list of them.
        method: a :mod:`facerecon.methods` name; None: the CLI's default (``auto`` with the
            shipped R-Net, else ``fit``).
        model: face model name or ``.npz`` path.
        as_set: all faces are one person: one shared identity (C-Net confidences with the
            shipped nets).
        all_faces: every face of a photo, not only the largest.
        detector: ``"auto"`` (dlib's HOG, then the fallbacks of
            :class:`facerecon.detect.FallbackDetector`), ``"dlib"``, ``"mmod"`` or
            ``"mediapipe"``.
        device, weights, cnet, fast, shipped: as the CLI's ``--device``, ``--weights``,
            ``--cnet``, ``--fast``, ``--no-shipped-weights``.
        views, mvr_weights: the images are 1-3 simultaneous views of one face (``--views``,
            ``--mvr-weights``): one identity and expression, per-view pose and light.

    Returns:
        One :class:`Reconstruction` per face, in input order.

    Raises:
        FaceReconError: (one-line message) for an unreadable photo, a photo without a face,
            or a failing stage.
    """
    from facerecon.detect import detector_for, load_image, to_rgb_uint8

    items = [images] if isinstance(images, (str, Path, np.ndarray)) else list(images)
    options = ReconstructOptions(
        model=model,
        method=method,
        weights=Path(weights) if weights is not None else None,
        cnet=Path(cnet) if cnet is not None else None,
        shipped=shipped,
        device=device,
        as_set=as_set,
        views=views,
        mvr_weights=Path(mvr_weights) if mvr_weights is not None else None,
        all_faces=all_faces,
        detector=detector,
        fast=fast,
        report=False,
    )
    recon = Reconstructor(options)
    as_set, all_faces = recon.options.as_set, recon.options.all_faces  # views: a set, largest face
    det = detector_for(detector)
    paths = [Path(x) for x in items if not isinstance(x, np.ndarray)]
    stems = iter(unique_names(paths))
    faces: list[PreparedFace] = []
    taken: set[str] = set()
    for k, item in enumerate(items):
        if isinstance(item, np.ndarray):
            photo, source, name = to_rgb_uint8(item), None, f"image{k}"
        else:
            source, name = Path(item), next(stems)
            photo = run_stage("loading", load_image, source)
        for face in prepare_photo(photo, source, name, det, all_faces):
            faces.append(dataclasses.replace(face, name=claim_name(face.name, taken)))
    stage = recon.method.stage
    out: list[Reconstruction] = []
    groups = [faces] if as_set else [[f] for f in faces]
    for group in groups:
        start = time.perf_counter()
        est = run_stage(("joint " if as_set else "") + stage, recon.estimate, group, as_set)
        seconds = (time.perf_counter() - start) / len(group)
        conf = est.confidences.tolist() if est.confidences is not None else [None] * len(group)
        out += [
            recon.reconstruction(f, c, seconds, k)
            for f, c, k in zip(group, est.coeffs, conf, strict=True)
        ]
    return out


def resolve_options(options: ReconstructOptions) -> ReconstructOptions:
    """Fill in what the user left to defaults (``facerecon.nets.shipped``):

    - ``weights``: the R-Net shipped for ``model`` when the method may use one;
    - ``method``: ``auto`` when R-Net weights are known, else ``fit``;
    - ``cnet``: with ``as_set``, an R-Net method and the shipped R-Net, the C-Net shipped for
      ``model`` (it was trained on that R-Net's features, never paired with another).

    - with ``views``: ``method`` ``mvfit`` (the multi-view fit: the most accurate multi-view
      row of BENCHMARKS.md; the shipped CPU DF-MVR net learned no identity, so ``mvr-auto``
      only matches it), ``mvr_weights`` the shipped ones when none are given; ``as_set``.

    ``shipped=False`` never picks shipped weights (so ``method`` defaults to ``fit``).
    """
    from facerecon.methods import network_methods
    from facerecon.nets.shipped import shipped_weights

    if options.views:
        mvr = options.mvr_weights
        if mvr is None and options.shipped:
            mvr = shipped_weights("mvr", options.model)
        method = options.method or "mvfit"
        options = dataclasses.replace(
            options, as_set=True, all_faces=False, method=method, mvr_weights=mvr
        )

    weights, method, cnet = options.weights, options.method, options.cnet
    shipped_rnet = shipped_weights("rnet", options.model) if options.shipped else None
    if weights is None and method in (None, *network_methods()):
        weights = shipped_rnet
    if method is None:
        method = "auto" if weights is not None else "fit"
    uses_shipped = shipped_rnet is not None and weights == shipped_rnet
    if cnet is None and uses_shipped and options.as_set and method in network_methods():
        cnet = shipped_weights("cnet", options.model)  # trained on that R-Net's features
    return dataclasses.replace(options, weights=weights, method=method, cnet=cnet)


def method_spec(options: ReconstructOptions):
    """The :class:`facerecon.methods.MethodSpec` of resolved options."""
    from facerecon.methods import MethodSpec

    return MethodSpec(
        weights=options.weights,
        mvr_weights=options.mvr_weights,
        pgn_weights=options.pgn_weights,
        cnet=options.cnet,
        strategy=options.strategy,
        fast=options.fast,
        perceptual=options.perceptual and options.method != "rnet",
        rasterizer=options.rasterizer,
        device=options.device,
    )


def write_face(
    recon: Reconstructor,
    face: PreparedFace,
    coeffs: torch.Tensor,
    seconds: float,
    confidence: float | None = None,
):
    """:meth:`Reconstructor.write` as one stage: on failure the files it created for this
    face are removed (files that existed before are left as they are) and a one-line
    :class:`FaceReconError` is raised."""
    paths = list(output_paths(recon.options.out_dir, face.name).values())
    existed = {p for p in paths if p.exists()}

    def write() -> dict:
        return recon.write(face, recon.reconstruction(face, coeffs, seconds, confidence))

    try:
        return run_stage("writing outputs", write)
    except FaceReconError:
        for p in paths:
            if p not in existed:
                p.unlink(missing_ok=True)
        raise


def reconstruct_face(recon: Reconstructor, face: PreparedFace) -> dict:
    """Fit (or regress) one face and write its outputs; returns its summary entry."""
    start = time.perf_counter()
    stage = recon.method.stage
    result = run_stage(stage, recon.estimate, [face], shared_identity=False)
    return write_face(recon, face, result.coeffs[0], time.perf_counter() - start)


def run(
    inputs: list[str],
    options: ReconstructOptions,
    progress: Callable[[str], None] | None = None,
    show_progress: bool = False,
) -> RunSummary:
    """Reconstruct every face in ``inputs``; bad inputs are reported and skipped.

    Every output the run may write is checked before any work (refused unless
    ``options.overwrite``). Each input's stages (load, detect, align, fit, write) fail for
    that input only: ``summary.failed`` gets ``(path, one-line reason)`` and the batch goes on.

    ``show_progress`` draws a progress bar on stderr that advances when a photo's work is
    done (with ``as_set``: one step per photo's detection, then one for the joint fit);
    ``progress`` receives one line per input.
    """
    from tqdm import tqdm

    options = resolve_options(options)
    summary = RunSummary()
    paths, missing = collect_inputs(inputs)
    summary.failed.extend(missing)
    if not paths:
        detail = "; ".join(message for _, message in missing) or "no paths given"
        raise ImageError(f"no input images found ({detail})")
    names = unique_names(paths)
    out_dir = options.out_dir
    check_outputs_free(
        existing_outputs(out_dir, names, options.all_faces, options.report), options.overwrite
    )
    prepare_out_dir(out_dir)

    from facerecon.detect import detector_for

    detector = detector_for(options.detector)
    recon = Reconstructor(options)
    prepared: list[PreparedFace] = []
    taken = set(names)
    bar = tqdm(
        total=len(paths) + (1 if options.as_set else 0),
        disable=not show_progress,
        unit="step" if options.as_set else "photo",
        desc="detect" if options.as_set else "reconstruct",
        file=sys.stderr,
        mininterval=0,
    )

    def say(msg: str) -> None:
        if progress:
            progress(msg)
        if show_progress:
            bar.write(msg, file=sys.stderr)

    def fail(source: Path, message: str, tag: str) -> None:
        summary.failed.append((str(source), message))
        say(f"{tag}: FAILED: {message}")

    for i, (path, name) in enumerate(zip(paths, names, strict=True)):
        tag = f"[{i + 1}/{len(paths)}] {path}"
        try:
            faces = prepare_image(path, name, detector, options.all_faces)
        except FaceReconError as exc:
            fail(path, str(exc), tag)
            bar.update(1)
            continue
        if len(faces) > 1:  # NAME_faceK must not collide with another input's NAME
            faces = [dataclasses.replace(f, name=claim_name(f.name, taken)) for f in faces]
        if options.as_set:
            prepared.extend(faces)
            done = f"{tag}: {len(faces)} face(s) found"
        else:
            n_ok = 0
            for face in faces:
                try:
                    summary.written.append(reconstruct_face(recon, face))
                    n_ok += 1
                except FaceReconError as exc:
                    fail(path, f"{face.name}: {exc}", tag)
            done = f"{tag}: {n_ok}/{len(faces)} face(s) written"
        bar.update(1)
        say(done)
    if options.as_set:
        bar.set_description("joint fit")
        if prepared:
            say(f"joint fit of {len(prepared)} faces as one identity")
            write_joint_fit(recon, prepared, summary, fail)
        bar.update(1)
    bar.close()
    write_summary(out_dir / SUMMARY_NAME, summary, options.overwrite)
    if options.report:
        summary.report = run_stage(
            "writing report.html", write_run_report, options, summary, out_dir / "report.html"
        )
    return summary


def write_joint_fit(
    recon: Reconstructor,
    faces: list[PreparedFace],
    summary: RunSummary,
    fail: Callable[[Path, str, str], None],
) -> None:
    """One shared identity for ``faces``; a failed fit fails every face, a failed write
    only its face. With ``--texture photo`` every face gets the texture of all the photos,
    blended by their visibility weights (:func:`facerecon.texture.photo_texture`)."""
    start = time.perf_counter()
    stage = "joint " + recon.method.stage
    try:
        result = run_stage(stage, recon.estimate, faces, shared_identity=True)
    except FaceReconError as exc:
        for face in faces:
            fail(face.source, f"{face.name}: {exc}", str(face.source))
        return
    seconds = (time.perf_counter() - start) / len(faces)
    conf = [None] * len(faces) if result.confidences is None else result.confidences.tolist()
    if recon.options.texture == "photo":  # one texture from all photos, for every face

        def blended():
            recs = [recon.reconstruction(f, c) for f, c in zip(faces, result.coeffs, strict=True)]
            return recon.photo_texture(faces, recs)

        try:
            recon.shared_texture = run_stage("texturing", blended)
        except FaceReconError:
            recon.shared_texture = None  # each face is textured from its own photo instead
    try:
        for face, coeffs, c in zip(faces, result.coeffs, conf, strict=True):
            try:
                summary.written.append(write_face(recon, face, coeffs, seconds, c))
            except FaceReconError as exc:
                fail(face.source, f"{face.name}: {exc}", str(face.source))
    finally:
        recon.shared_texture = None


def write_summary(path: Path, summary: RunSummary, overwrite: bool) -> Path:
    """``summary.json``: ``{"written": [...], "failed": [[path, reason], ...]}``."""
    from facerecon.io import ensure_writable

    path = ensure_writable(path, overwrite)
    path.write_text(json.dumps({"written": summary.written, "failed": summary.failed}, indent=2))
    return path


def write_run_report(options: ReconstructOptions, summary: RunSummary, path: Path) -> Path:
    from facerecon.io import ReportEntry, write_report

    entries = []
    for item in summary.written:
        p = item["paths"]
        entries.append(
            ReportEntry(
                name=item["name"],
                photo_path=item["source"],
                overlay_path=p["overlay"],
                glb_path=p["glb"],
                status="ok",
                confidence=item.get("confidence"),
                meta={
                    "model": options.model,
                    "method": options.method,
                    "seconds": round(item["seconds"], 2),
                    "landmark error (px)": round(item["landmark_error_px"], 2),
                    "detector": item.get("detector", ""),
                },
            )
        )
    for source, message in summary.failed:
        entries.append(
            ReportEntry(
                name=Path(source).name,
                photo_path=None,
                overlay_path=None,
                glb_path=None,
                status="failed",
                message=message,
            )
        )
    return write_report(path.parent, entries, overwrite=options.overwrite)

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

from facerecon.errors import FaceReconError, ImageError, OutputExistsError

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
    all_faces: bool = False
    overwrite: bool = False
    detector: str = "dlib"
    perceptual: bool = True
    fast: bool = False
    report: bool = True
    rasterizer: str = "torch"  # facerecon.render.rasterize backend: torch, nvdiffrast or auto


@dataclass
class PreparedFace:
    """One detected face, aligned to the 224 crop."""

    source: Path
    name: str
    photo: np.ndarray  # (H, W, 3) uint8, the original photo
    aligned: object  # facerecon.detect.align.AlignedFace
    detected_lm68: np.ndarray  # (68, 2) original-photo pixels


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


def check_outputs_free(paths: Iterable[Path], overwrite: bool) -> None:
    """Refuse before any work when an output exists and ``overwrite`` is off; the one-line
    message names the first existing path."""
    if overwrite:
        return
    existing = [p for p in paths if p.exists()]
    if existing:
        more = f" (and {len(existing) - 1} more outputs)" if len(existing) > 1 else ""
        raise OutputExistsError(f"{existing[0]} exists{more}; pass --overwrite to replace it")


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
    from facerecon.detect import align, load_image
    from facerecon.errors import NoFaceError

    photo = run_stage("loading", load_image, path)
    faces = run_stage("face detection", detector.detect, photo, all_faces=all_faces)
    if not faces:
        raise NoFaceError(f"{path}: no face found")
    prepared = []
    for k, face in enumerate(faces):
        aligned = run_stage("alignment", align, photo, face.landmarks68)
        face_name = name if len(faces) == 1 else f"{name}_face{k}"
        prepared.append(PreparedFace(path, face_name, photo, aligned, face.landmarks68))
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
        self._uv = None
        self.method = build_method(options.method, method_spec(options), self.model)

    def estimate(self, faces: list[PreparedFace], shared_identity: bool):
        """The method's :class:`facerecon.methods.Estimate` for a batch of faces (one
        identity for all when ``shared_identity``)."""
        from facerecon.methods import crops_target

        target = crops_target([f.aligned for f in faces], self.model.mean_shape)
        return self.method(target, shared_identity)

    def uv(self) -> np.ndarray:
        """``(N, 2)`` texture coordinates of the model, the same for every face it makes."""
        if self._uv is None:
            from facerecon.io import cylindrical_uv

            self._uv = cylindrical_uv(self.model.mean_shape.cpu().numpy())
        return self._uv

    def write(
        self,
        face: PreparedFace,
        coeffs: torch.Tensor,
        seconds: float,
        confidence: float | None = None,
    ) -> dict:
        """Write every per-face output; returns a summary dict for the report
        (``confidence``: the method's per-image confidence, e.g. the C-Net's, or None)."""
        from facerecon.fit import fitted_landmarks
        from facerecon.io import (
            bake_vertex_colors_to_texture,
            draw_landmarks,
            overlay_image,
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
        parts = model.layout.split(coeffs[None])
        with torch.no_grad():
            vertices, albedo = model(parts["id_coeff"], parts["exp_coeff"], parts["tex_coeff"])
            camera = CameraConfig()
            out = render(
                vertices,
                albedo,
                model.triangles,
                parts["angles"],
                parts["trans"],
                parts["gamma"],
                camera,
            )
        tri = model.triangles.cpu().numpy()
        verts = vertices[0].cpu().numpy()
        colors = albedo[0].clamp(0, 1).cpu().numpy()
        # OBJ: vertex colours (MeshLab) plus a UV texture map (Blender, Unity ignore vertex colours)
        texture = bake_vertex_colors_to_texture(self.uv(), tri, colors, size=1024)
        write_obj(
            paths["obj"],
            verts,
            tri,
            colors=colors,
            uv=self.uv(),
            texture=texture,
            overwrite=opts.overwrite,
        )
        write_glb(paths["glb"], verts, tri, colors=colors, overwrite=opts.overwrite)

        transform = face.aligned.transform
        lm_crop = fitted_landmarks(model, vertices, parts["angles"], parts["trans"], camera)
        lm_crop = lm_crop[0].cpu().numpy()
        lm_orig = transform.to_original(lm_crop)
        crop_to_orig = transform.matrix_to_original
        h, w = face.photo.shape[:2]
        render_img = out.image[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy()
        mask = out.mask[0, 0].float().cpu().numpy()
        render_orig = warp_to_original(render_img, crop_to_orig, (h, w))
        mask_orig = warp_to_original(mask, crop_to_orig, (h, w))
        overlay = overlay_image(face.photo, render_orig, mask_orig)
        overlay = draw_landmarks(overlay, face.detected_lm68, color=(0, 255, 0))
        overlay = draw_landmarks(overlay, lm_orig, color=(255, 0, 0))
        save_png(paths["overlay"], overlay, overwrite=opts.overwrite)

        arrays = {k: v[0].cpu().numpy() for k, v in parts.items()}
        arrays["coeffs"] = coeffs.cpu().numpy()
        arrays["crop_to_original"] = np.asarray(crop_to_orig)
        arrays["landmarks68"] = lm_orig
        arrays["detected_landmarks68"] = face.detected_lm68
        meta = {
            "model": model.name,
            "layout": list(model.layout.sizes),
            "method": opts.method,
            "source": str(face.source),
            "units": "vertices mm (model space); trans in scene units (1 = 100 mm)",
            "seconds": seconds,
        }
        save_coefficients(paths["npz"], arrays, meta, overwrite=opts.overwrite)
        err = float(np.linalg.norm(lm_orig - face.detected_lm68, axis=1).mean())
        write_landmarks_json(
            paths["landmarks"],
            lm_orig,
            extra={"detected": face.detected_lm68.tolist(), "mean_error_px": err},
            overwrite=opts.overwrite,
        )
        return {
            "name": face.name,
            "confidence": confidence,
            "source": str(face.source),
            "paths": {k: str(v) for k, v in paths.items()},
            "seconds": seconds,
            "landmark_error_px": err,
        }


def resolve_options(options: ReconstructOptions) -> ReconstructOptions:
    """Fill in what the user left to defaults (``facerecon.nets.shipped``):

    - ``weights``: the R-Net shipped for ``model`` when the method may use one;
    - ``method``: ``auto`` when R-Net weights are known, else ``fit``;
    - ``cnet``: with ``as_set``, an R-Net method and the shipped R-Net, the C-Net shipped for
      ``model`` (it was trained on that R-Net's features, never paired with another).

    ``shipped=False`` never picks shipped weights (so ``method`` defaults to ``fit``).
    """
    from facerecon.methods import network_methods
    from facerecon.nets.shipped import shipped_weights

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
    try:
        return run_stage("writing outputs", recon.write, face, coeffs, seconds, confidence)
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


def prepare_out_dir(out_dir: Path) -> None:
    """Create ``out_dir``; a one-line error when it cannot be a folder."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FaceReconError(f"--out {out_dir} is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FaceReconError(f"cannot create --out {out_dir}: {exc.strerror or exc}") from None


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

    from facerecon.detect import Detector, DetectorConfig

    detector = Detector(DetectorConfig(backend=options.detector))
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
    only its face."""
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
    for face, coeffs, c in zip(faces, result.coeffs, conf, strict=True):
        try:
            summary.written.append(write_face(recon, face, coeffs, seconds, c))
        except FaceReconError as exc:
            fail(face.source, f"{face.name}: {exc}", str(face.source))


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

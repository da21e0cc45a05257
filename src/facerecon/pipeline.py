"""The main job, end to end: photos -> detected, aligned faces -> coefficients -> files.

Data flows one way: ``load_image`` -> ``detect`` -> ``align`` -> ``fit`` -> mesh -> export.
The CLI parses arguments and calls :func:`run`; nothing here prints except through the
``progress`` callback, so the same code serves scripts and notebooks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import itertools
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from facerecon.concurrency import ForkedPool, Ordered, prefetched
from facerecon.detect.align import rot90_points
from facerecon.errors import FaceReconError, ImageError
from facerecon.fileio import atomic_write_text
from facerecon.io.paths import OutputLock, check_outputs_free, check_writable, prepare_out_dir
from facerecon.timing import StageTimes

if TYPE_CHECKING:  # torch loads on first use: importing this module stays light (the CLI
    # forks its photo-preparing process before torch is loaded, see start_prepare_worker)
    import torch

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}
SUMMARY_NAME = "summary.json"
T = TypeVar("T")

#: ``--outputs`` kinds: each names the files :func:`output_paths` gives it
OUTPUT_KINDS = ("obj", "neutral", "glb", "npz", "overlay", "landmarks")


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
    # facerecon.detect.DETECTOR_CHOICES; None: default_detector (fast; auto for views)
    detector: str | None = None
    perceptual: bool = True
    fast: bool = False
    report: bool = True
    rasterizer: str = "torch"  # facerecon.render.rasterize backend: torch, nvdiffrast or auto
    # faces estimated together (single photos; a set is one batch): the network's batch, and
    # the fits' too (independent fits of several faces in one optimisation: 2-3x faster per
    # face on a CPU; shapes equal to 1e-7, pose and light within the photometric fit's own
    # sensitivity); 0: the method's default (16 for networks, 8 for fits)
    batch_size: int = 0
    # which per-face files to write (OUTPUT_KINDS); summary.json and the report always
    outputs: tuple[str, ...] = OUTPUT_KINDS
    # longer side of NAME_overlay.png in pixels (the photo is scaled down to it; 0: full size)
    overlay_size: int = 1280
    # photos are decoded at most this many pixels a side (a 100 MP JPEG at 1/4 scale, by the
    # decoder itself): memory stays bounded; outputs stay in the photo file's pixels
    max_side: int = 4096
    # (i, n): reconstruct only the i-th of n stable parts of the inputs (every n-th photo from
    # the i-th on, in the order of collect_inputs); its summary is summary.shard-I-of-N.json
    # and it writes no report (`facerecon merge` joins the shards' summaries)
    shard: tuple[int, int] | None = None
    # background threads: decode and detect the next photos, write the last ones, while the
    # method works on the current batch
    threads: bool = True
    # threads writing the faces (photo texture, files) when `threads`; 0: default_write_threads
    write_threads: int = 0
    # processes sharing the photos (run_workers: shards 0..N-1 in parallel, merged); torch
    # threads per process: the CPU count / workers
    workers: int = 1
    # skip the photos whose outputs an earlier (interrupted) run into this folder completed
    # (its summary.json says so and the files are there, or every file of the photo is);
    # the other photos' files, summary.json and the report are replaced
    resume: bool = False
    # hold the output folder's lock (io.paths.OutputLock) for the run; off only for the
    # worker processes of run_workers, whose parent holds it
    lock: bool = True
    # --set: a photo whose face does not look like the others' (face-descriptor distance
    # above SAME_PERSON) is reported; strict_set makes it a failure, left out of the set
    strict_set: bool = False
    # NAME_texture.png (OBJ/MTL, GLB): "photo", the person's own, baked from the photo(s)
    # (facerecon.texture.photo_texture), or "model", the fitted model albedo
    texture: str = "photo"
    # texels per side; 0: per face, as many as the photo holds (UVChart.size_for)
    texture_size: int = 0
    texture_delight: bool = True  # photo texture divided by the fitted SH light (False: as lit)


def default_batch_size(method) -> int:
    """Faces per batch for a method: 16 for a network alone, 8 when it fits."""
    return 8 if method.uses_more_landmarks else 16


def default_write_threads(method) -> int:
    """Threads writing the faces of one process: 2 for a network alone (writing, with the
    photo texture, is then the slowest stage of a batch, and a second writer keeps a 2-core
    CPU busy: rnet on 32 1080p photos went from 2.85 to 3.58 photos/s, a third writer was
    slower), 1 when it fits (the fit is the slowest stage, and a second writer takes CPU from
    it: 12 photos 4-8 % slower). :func:`run_workers` processes write with one each."""
    return 1 if method.uses_more_landmarks else 2


def fit_lanes(method, photos: int, batch_size: int, options: ReconstructOptions) -> int:
    """Fit batches run side by side in this process (1: one after the other).

    A fit's steps are many small tensor operations, which torch's threads share out poorly:
    on 2 cores, two batches of 8 fitted side by side in two threads with one torch thread each
    took 0.61 s a face for ``fit`` and 0.31 s for ``auto``, against 0.95 and 0.39 s one after
    the other with two torch threads each (2026-12-06). So a run of fits with at least two
    batches of photos on CPU threads gets one lane per torch thread (the process's torch threads
    are split between them: :func:`lane_threads`); networks, sets, GPUs and single batches keep
    one lane, and ``--workers`` processes already hold one torch thread each. Machines with more
    than 2 cores were not measured."""
    import torch

    if not (options.threads and method.uses_more_landmarks and not options.as_set):
        return 1
    if not str(options.device).startswith("cpu") or photos < 2 * batch_size:
        return 1
    return max(1, min(torch.get_num_threads(), photos // batch_size, 4))


def lane_threads(lanes: int) -> int | None:
    """Torch threads for each of ``lanes`` fit lanes (None: leave them as they are)."""
    import torch

    return None if lanes <= 1 else max(1, torch.get_num_threads() // lanes)


def beside_workers(method, worker: ForkedPool | None, cpus: int | None = None) -> int | None:
    """Torch threads for a network-only method (None: unchanged) while ``worker``'s
    processes prepare photos on ``cpus`` cores (None: this machine's): the cores they leave,
    at least one. A network's batch is short; its threads waiting on cores held by the
    workers cost more than they give: rnet's first batch of 16 1080p photos took 0.55 s with
    two torch threads beside two preparing processes, 0.2 s with one (2 cores, 2026-12-08).
    Fits keep their threads (:func:`fit_lanes`): their work outlasts the photos' preparing."""
    import os

    if worker is None or method.uses_more_landmarks:
        return None
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus - len(worker))


def torch_threads(n: int | None) -> int:
    """Set torch's intra-op threads to ``n`` (None: unchanged); returns the number before."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    return before


@dataclass
class PreparedFace:
    """One detected face, aligned to the 224 crop."""

    source: Path | None  # None: an array given to reconstruct()
    name: str
    # (h, w, 3) uint8: the photo at its working size (a very large one is decoded smaller,
    # see ReconstructOptions.max_side; ``scale`` maps photo pixels to it)
    photo: np.ndarray
    aligned: object  # facerecon.detect.align.AlignedFace (its transform: crop <-> photo)
    detected_lm68: np.ndarray  # (68, 2) pixels of ``photo``
    detector: str = ""  # which detector found it (facerecon.detect.Face.detector)
    alt_lm68: dict = field(default_factory=dict)  # other detectors' landmarks, photo pixels
    # seconds of the stages so far (load, detect, landmarks, align: the photo's, shared
    # equally by its faces), then the estimate's share and the writing
    stages: StageTimes = field(default_factory=StageTimes)
    index: int = 0  # the photo's position among the run's inputs (collect_inputs order)
    # degrees (counter-clockwise) the photo was turned to find the face (0: as given)
    rotated: int = 0
    # (sx, sy): a pixel x of the photo file is at (x + 0.5) * s - 0.5 in ``photo``
    scale: tuple[float, float] = (1.0, 1.0)

    def to_photo(self, points: np.ndarray) -> np.ndarray:
        """``(..., 2)`` pixels of :attr:`photo` -> pixels of the photo file."""
        return (np.asarray(points, np.float64) + 0.5) / np.asarray(self.scale) - 0.5

    def matrix_to_photo(self, matrix: np.ndarray) -> np.ndarray:
        """A ``(2, 3)`` map to :attr:`photo`'s pixels -> the same map to the photo file's."""
        from facerecon.io.overlay import scaled_transform

        return scaled_transform(matrix, (1 / self.scale[0], 1 / self.scale[1]))


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
        fit_lm68: ``(68, 2)`` photo pixels: the landmarks the method fitted in place of
            :attr:`detected_lm68` (a multi-view side view posed by the PGN), else None.
        fit_lm68_source: where :attr:`fit_lm68` came from (``"pgn"``), else ``""``.
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
    fit_lm68: np.ndarray | None = None
    fit_lm68_source: str = ""

    @property
    def landmark_error_px(self) -> float:
        """Mean distance of :attr:`lm68` to the landmarks the method fitted (photo pixels):
        :attr:`detected_lm68`, or :attr:`fit_lm68` where it used other points."""
        target = self.detected_lm68 if self.fit_lm68 is None else self.fit_lm68
        return float(np.linalg.norm(self.lm68 - target, axis=1).mean())


@dataclass
class RunSummary:
    """What a run produced: written faces, failed inputs (path, message), the report, the
    seconds per stage summed over the faces, the run's wall time and its number of photos."""

    written: list[dict] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    report: Path | None = None
    stages: StageTimes = field(default_factory=StageTimes)
    seconds: float = 0.0
    photos: int = 0
    method: str = ""
    model: str = ""
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. what input folders held besides images

    @property
    def ok(self) -> bool:
        return not self.failed


def collect_inputs(
    paths: Iterable[str], notes: list[str] | None = None
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, folders (non-recursive, image suffixes only) and globs.

    Args:
        notes: gets a line per folder naming what it holds besides images (sub-folders are
            not searched; other files are not read).

    Returns:
        (image paths in a stable order, [(argument, message)] for arguments matching nothing).
    """
    found: list[Path] = []
    missing: list[tuple[str, str]] = []
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            entries = sorted(p.iterdir())
            items = [q for q in entries if not q.is_dir() and q.suffix.lower() in IMAGE_SUFFIXES]
            folders = sum(1 for q in entries if q.is_dir())
            others = len(entries) - len(items) - folders
            if notes is not None and (folders or others):
                parts = [f"{folders} sub-folder(s) (not searched)"] * bool(folders)
                parts += [f"{others} file(s) without an image suffix"] * bool(others)
                notes.append(f"{arg}: skipped {' and '.join(parts)}")
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


def output_paths(
    out_dir: Path, name: str, outputs: tuple[str, ...] = OUTPUT_KINDS
) -> dict[str, Path]:
    """The files of one face, by key, for the ``outputs`` kinds (:data:`OUTPUT_KINDS`; the
    OBJ brings its ``.mtl`` and ``_texture.png``)."""
    every = {
        "obj": out_dir / f"{name}.obj",
        "neutral": out_dir / f"{name}_neutral.obj",
        "glb": out_dir / f"{name}.glb",
        "npz": out_dir / f"{name}.npz",
        "overlay": out_dir / f"{name}_overlay.png",
        "landmarks": out_dir / f"{name}_landmarks.json",
        "mtl": out_dir / f"{name}.mtl",
        "texture": out_dir / f"{name}_texture.png",
    }
    kind = {"mtl": "obj", "texture": "obj"}
    return {k: p for k, p in every.items() if kind.get(k, k) in outputs}


def parse_outputs(text: str) -> tuple[str, ...]:
    """``--outputs obj,npz`` -> ``("obj", "npz")`` (``all``: every kind); a one-line error
    names an unknown kind."""
    kinds = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    if kinds == ("all",):
        return OUTPUT_KINDS
    unknown = [k for k in kinds if k not in OUTPUT_KINDS]
    if unknown or not kinds:
        raise FaceReconError(
            f"--outputs {text!r}: use a comma-separated list of {', '.join(OUTPUT_KINDS)} or all"
        )
    return kinds


def summary_name(shard: tuple[int, int] | None) -> str:
    """``summary.json``, or ``summary.shard-I-of-N.json`` for shard ``(I, N)``."""
    return SUMMARY_NAME if shard is None else f"summary.shard-{shard[0]}-of-{shard[1]}.json"


def output_suffixes() -> tuple[str, ...]:
    """What :func:`output_paths` appends to a face name: ``(".obj", ..., "_texture.png")``."""
    return tuple(p.name[1:] for p in output_paths(Path(), "X").values())


def _face_output_pattern(name: str) -> re.Pattern[str]:
    """File names ``NAME_faceK<suffix>`` (also ``NAME_faceK_J<suffix>``) of ``--all-faces``."""
    suffixes = "|".join(re.escape(s) for s in output_suffixes())
    return re.compile(re.escape(name) + r"_face\d+(?:_\d+)?(?:" + suffixes + ")")


def existing_outputs(
    out_dir: Path,
    names: list[str],
    all_faces: bool,
    report: bool,
    outputs: tuple[str, ...] = OUTPUT_KINDS,
    summary: str = SUMMARY_NAME,
) -> list[Path]:
    """Files already in ``out_dir`` that a run over ``names`` could write, in run order.

    Per name its :func:`output_paths`; with ``all_faces`` also every ``NAME_faceK`` output
    (the number of faces is known only after detection); then the summary (``summary``) and,
    with ``report``, ``report.html`` (and a ``viewer.js`` that differs from ours).
    """
    from facerecon.io import report_conflicts

    if not out_dir.is_dir():
        return []
    present = sorted(p.name for p in out_dir.iterdir())
    found: list[Path] = []
    for name in names:
        found.extend(p for p in output_paths(out_dir, name, outputs).values() if p.exists())
        if all_faces:
            pattern = _face_output_pattern(name)
            found.extend(out_dir / n for n in present if pattern.fullmatch(n))
    if (out_dir / summary).exists():
        found.append(out_dir / summary)
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


def prepare_image(
    path: Path, name: str, detector, all_faces: bool, index: int = 0, max_side: int = 4096
) -> list[PreparedFace]:
    """Load (at most ``max_side`` pixels a side, :func:`facerecon.detect.image_io.
    load_image_bounded`), detect and align the faces of one photo (largest only unless
    ``all_faces``).

    Every stage's failure is a one-line :class:`FaceReconError` naming the stage. Each face's
    ``stages`` get the photo's load, detection and alignment seconds (shared equally).
    """
    from facerecon.detect.image_io import load_image_bounded

    times = StageTimes()
    with times.timed("load"):
        loaded = run_stage("loading", load_image_bounded, path, max_side)
    faces = prepare_photo(loaded.image, path, name, detector, all_faces, index, times)
    for f in faces:
        f.scale = loaded.scale
    return faces


@dataclass
class PhotoPreparer:
    """:func:`prepare_image` of a run's photo ``i`` (``paths[i]``, output name ``names[i]``)
    as one picklable call, the same in the background thread and in
    :func:`start_prepare_worker`'s process (the detector,
    :func:`facerecon.detect.detector_for`, is built on the first photo)."""

    paths: list[Path]
    names: list[str]
    detector: str
    second_opinion: bool
    all_faces: bool
    max_side: int
    _built: object = field(default=None, repr=False, compare=False)

    def __call__(self, i: int) -> list[PreparedFace]:
        from facerecon.detect import detector_for

        if self._built is None:
            self._built = detector_for(self.detector, second_opinion=self.second_opinion)
        return prepare_image(
            self.paths[i], self.names[i], self._built, self.all_faces, i, self.max_side
        )


def start_prepare_worker(detector: str, processes: int = 1) -> ForkedPool | None:
    """``processes`` processes, forked now, that load ``--detector``'s libraries and models
    (:func:`facerecon.detect.preload`) and then prepare :func:`run`'s photos (load, detect,
    align) on other cores, photos dealt in turn (:class:`facerecon.concurrency.ForkedPool`);
    None where processes do not fork. Start them before torch loads (importing this module
    does not load torch): they load side by side, where threads would take turns on the GIL.
    ``close()`` them after the run. :func:`prepare_processes` says how many pay."""
    import functools

    from facerecon.detect import preload

    if not ForkedPool.available():
        return None
    return ForkedPool(functools.partial(preload, detector), processes)


def prepare_processes(photos: int, method: str | None = None, cpus: int | None = None) -> int:
    """How many photo-preparing processes (:func:`start_prepare_worker`) a run of ``photos``
    photos with ``method`` (None: the default, a fit) gets on ``cpus`` cores (None: this
    machine's): one per core up to 4 for a network-only method
    (:data:`facerecon.methods.NETWORK_ONLY`) from 8 photos on, and for any method from 48;
    else one. Preparing a 1080p photo (load, detect, align: 30-40 ms, more where a small face
    needs MediaPipe's tiled search) costs several times ``rnet --outputs npz``'s network and
    files, so one such process paces the run; the processes share one load of the detector's
    models (:class:`facerecon.concurrency.ForkedPool`). On 2 cores, 32 1080p photos took
    3.2-3.4 s with two processes against 3.6-3.9 s with one (every output: 8.1 against
    8.3-8.6 s), 128 photos 7.9-8.7 against 9.8-10.0 s; 8 photos the same (2026-12-08). A fit's
    run is paced by the fit, which a second process takes cores from. Machines with more cores
    were not measured."""
    import os

    from facerecon.methods import NETWORK_ONLY

    cpus = cpus or os.cpu_count() or 1
    many = photos >= (8 if method in NETWORK_ONLY else 48)
    return min(cpus, 4) if many and cpus >= 2 else 1


def upright_turns(lm68: np.ndarray, size: tuple[int, int]) -> int:
    """Quarter turns ``k`` (``np.rot90``) that make a face with landmarks ``lm68 (68, 2)`` in
    an ``(H, W)`` image upright: the eye line closest to horizontal, eyes above the mouth."""

    def tilt(k: int) -> float:
        lm = rot90_points(np.asarray(lm68, np.float64), k, size)
        eyes = lm[42:48].mean(0) - lm[36:42].mean(0)  # subject's left eye minus right eye
        return abs(float(np.degrees(np.arctan2(eyes[1], eyes[0]))))

    return min(range(4), key=tilt)


def prepare_photo(
    photo: np.ndarray,
    source: Path | None,
    name: str,
    detector,
    all_faces: bool,
    index: int = 0,
    times: StageTimes | None = None,
) -> list[PreparedFace]:
    """Detect and align the faces of a loaded photo ``(H, W, 3)`` uint8 RGB; ``source`` names
    it in messages (None: an array); ``index``: its position in the run; ``times``: seconds
    spent on it so far (the detection's and alignment's are added)."""
    from facerecon.detect import align
    from facerecon.errors import NoFaceError

    times = times or StageTimes()

    def detect(turns: int) -> tuple[np.ndarray, list]:
        image = np.ascontiguousarray(np.rot90(photo, turns)) if turns else photo
        try:
            return image, run_stage("face detection", detector.detect, image, all_faces=all_faces)
        finally:
            times.merge(getattr(detector, "seconds", {}))

    upright, faces = detect(0)
    turns = upright_turns(faces[0].lm68, photo.shape[:2]) if faces else 0
    if turns:  # found lying on its side or upside down (MediaPipe and MMOD find such faces)
        upright, faces = detect(turns)
    else:
        for k in (1, 3, 2) if not faces else ():  # a quarter turn either way, upside down
            upright, faces = detect(k)
            if faces and upright_turns(faces[0].lm68, upright.shape[:2]) == 0:
                turns = k
                break
            faces = []
    if not faces:
        what = source if source is not None else name
        raise NoFaceError(f"{what}: no face found (also turned by 90, 180 and 270 degrees)")
    aligned = []
    with times.timed("align"):
        for face in faces:
            crop = run_stage("alignment", align, upright, face.lm68)
            if turns:  # the crop is upright; its maps go to the photo as given
                size = photo.shape[:2]
                crop.transform = dataclasses.replace(
                    crop.transform, original_size=size, rotation=turns
                )
                face.lm68 = rot90_points(face.lm68, turns, size, inverse=True)
                face.alt_lm68 = {
                    k: rot90_points(v, turns, size, inverse=True) for k, v in face.alt_lm68.items()
                }
            aligned.append(crop)
    share = {k: v / len(faces) for k, v in times.seconds.items()}
    prepared = []
    for k, (face, crop) in enumerate(zip(faces, aligned, strict=True)):
        face_name = name if len(faces) == 1 else f"{name}_face{k}"
        prepared.append(
            PreparedFace(
                source,
                face_name,
                photo,
                crop,
                face.lm68,
                face.detector,
                dict(face.alt_lm68),
                StageTimes(share),
                index,
                rotated=90 * turns,
            )
        )
    return prepared


def fit_landmarks_source(rec: Reconstruction) -> dict:
    """``{"fit_landmarks": source}`` for ``summary.json`` and the npz's metadata when the
    method fitted other landmarks than the detected ones; ``{}`` otherwise."""
    return {"fit_landmarks": rec.fit_lm68_source} if rec.fit_lm68_source else {}


def replaced_landmarks(rec: Reconstruction) -> dict:
    """``{"fit": points, "fit_source": name}`` for ``NAME_landmarks.json`` when the method
    fitted other landmarks than the detected ones; ``{}`` otherwise."""
    if rec.fit_lm68 is None:
        return {}
    return {"fit": rec.fit_lm68.tolist(), "fit_source": rec.fit_lm68_source}


def landmarks_note(item: dict) -> dict:
    """The report's line for a face whose fit did not use the detected landmarks."""
    source = item.get("fit_landmarks")
    if not source:
        return {}
    what = "the PGN's points and pose" if source == "pgn" else f"{source}'s points"
    return {"landmarks fitted": f"{what} (the detector's, grey in the overlay, were not used)"}


class Reconstructor:
    """Holds the face model and the method (:mod:`facerecon.methods`); reconstructs batches of
    prepared faces and writes their outputs."""

    def __init__(self, options: ReconstructOptions):
        import torch

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
        self._chart_lock = threading.Lock()
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
        replaced: tuple[str, np.ndarray] | None = None,
    ) -> Reconstruction:
        """The mesh, landmarks and coefficients of ``coeffs (layout.size,)`` for ``face``
        (``replaced``: ``(source, (68, 2) crop pixels)``, the landmarks the method fitted in
        place of the detected ones, :attr:`facerecon.methods.Estimate.replaced_lm68`)."""
        import torch

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
        fit_lm68, source = None, ""
        if replaced is not None:
            source, points = replaced
            fit_lm68 = face.to_photo(transform.to_original(np.asarray(points, np.float64)))
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
            lm68=face.to_photo(transform.to_original(lm_crop[0].cpu().numpy())),
            detected_lm68=face.to_photo(face.detected_lm68),
            crop_to_original=face.matrix_to_photo(transform.matrix_to_original),
            confidence=confidence,
            seconds=seconds,
            fit_lm68=fit_lm68,
            fit_lm68_source=source,
        )

    def chart(self):
        """The model's :class:`facerecon.texture.UVChart` (read from the cache, or built and
        cached, on first use; then shared by every face: UV, texel maps, mirror map)."""
        with self._chart_lock:  # writer threads ask for it side by side
            if self._chart is None:
                from facerecon.cache import cache_dir
                from facerecon.texture import UVChart

                self._chart = UVChart.of_model(self.model, cache=cache_dir() / "charts")
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
            crop_to_photo = f.aligned.transform.matrix_to_original  # the working photo's pixels
            views.append(PhotoView(f.photo, r.vertices, p["angles"], p["trans"], p["gamma"],
                                   crop_to_photo))  # fmt: skip
        albedo = np.mean([np.clip(r.albedo, 0.0, 1.0) for r in recs], axis=0)
        return photo_texture(self.chart(), views, albedo, cfg)

    def write(self, face: PreparedFace, rec: Reconstruction, texture=None) -> dict:
        """Write the per-face outputs of ``rec`` that ``options.outputs`` asks for; returns a
        summary dict for the report. ``texture``: a :class:`facerecon.texture.FaceTexture`
        made already (a set's blended one), else one is made from this face's photo."""
        from facerecon.io import (
            png_bytes,
            save_coefficients,
            write_glb,
            write_landmarks_json,
            write_obj,
        )

        opts = self.options
        paths = output_paths(opts.out_dir, face.name, opts.outputs)
        model = self.model
        tri, verts, colors = rec.triangles, rec.vertices, np.clip(rec.albedo, 0.0, 1.0)
        info, gain = {}, None
        if {"obj", "glb", "neutral"} & set(paths):
            chart, uv = self.chart(), self.uv()
            # OBJ: vertex colours (MeshLab) plus a UV texture map (Blender, Unity ignore vertex
            # colours); GLB: the texture as its material's base colour (photo), or vertex
            # colours
            with face.stages.timed("texture"):
                if opts.texture == "photo":
                    tex = texture or self.photo_texture([face], [rec])
                    png = png_bytes(tex.image)
                    colors = chart.vertex_colors(tex.image)
                    info = {"texture": "photo", "texture_size": int(tex.image.shape[0]),
                            "texture_seen": round(tex.seen, 3),
                            "texture_seconds": round(tex.seconds, 3)}  # fmt: skip
                    gain = tex.gain
                else:
                    # per-vertex colours: the 512 work grid holds them (a larger map is that
                    # grid upsampled)
                    size = opts.texture_size or chart.work_size
                    png = png_bytes(chart.bake_colors(colors, size))
                    info = {"texture": "model", "texture_size": size}
            if "glb" in paths:
                if opts.texture == "photo":
                    write_glb(paths["glb"], verts, tri, uv=uv, texture=png,
                              overwrite=opts.overwrite)  # fmt: skip
                else:
                    write_glb(paths["glb"], verts, tri, colors=colors, overwrite=opts.overwrite)
            if "obj" in paths:
                write_obj(paths["obj"], verts, tri, colors=colors, uv=uv, texture=png,
                          overwrite=opts.overwrite)  # fmt: skip
            if "neutral" in paths:
                # identity with expression 0 (what NoW-style benchmarks score), same colours
                write_obj(paths["neutral"], rec.neutral_vertices, tri, colors=colors, uv=uv,
                          overwrite=opts.overwrite)  # fmt: skip
        if "overlay" in paths:
            self.write_overlay(paths["overlay"], face, rec)
        if "npz" in paths:
            arrays = dict(rec.parts)
            arrays["coeffs"] = rec.coeffs
            arrays["crop_to_original"] = rec.crop_to_original
            arrays["neutral_vertices"] = rec.neutral_vertices.astype(np.float32)
            if gain is not None:  # NAME_texture.png / 255 / texture_gain: the albedo
                arrays["texture_gain"] = np.asarray(gain, np.float32)
            # npz keys are the file format (users' files keep loading): landmarks68 holds lm68
            arrays["landmarks68"] = rec.lm68
            arrays["detected_landmarks68"] = rec.detected_lm68
            if rec.fit_lm68 is not None:
                arrays["fit_landmarks68"] = rec.fit_lm68
            meta = {
                "detector": face.detector,
                **fit_landmarks_source(rec),
                "model": model.name,
                "layout": list(model.layout.sizes),
                "method": opts.method,
                "source": str(face.source),
                "units": "vertices mm (model space); trans in scene units (1 = 100 mm)",
                "seconds": rec.seconds,
            }
            save_coefficients(paths["npz"], arrays, meta, overwrite=opts.overwrite)
        err = rec.landmark_error_px
        if "landmarks" in paths:
            write_landmarks_json(
                paths["landmarks"],
                rec.lm68,
                extra={
                    "detected": rec.detected_lm68.tolist(),
                    "mean_error_px": err,
                    **replaced_landmarks(rec),
                },
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
            **fit_landmarks_source(rec),
            **info,
            **({"rotated": face.rotated} if face.rotated else {}),
        }

    def write_overlay(self, path: Path, face: PreparedFace, rec: Reconstruction) -> None:
        """``NAME_overlay.png``: the render blended onto the photo (its longer side at most
        ``options.overlay_size``), the detected landmarks in green, the reconstruction's in
        red; where the method fitted other points in place of the detected ones (a side view
        posed by the PGN) those in yellow, the detected ones (not used) in grey."""
        import torch

        from facerecon.io import draw_landmarks, overlay_on_photo, save_png
        from facerecon.render import CameraConfig, render

        parts = {k: torch.from_numpy(v)[None].to(self.device) for k, v in rec.parts.items()}
        with torch.no_grad():
            out = render(
                torch.from_numpy(rec.vertices)[None].to(self.device),
                torch.from_numpy(rec.albedo)[None].to(self.device),
                self.model.triangles,
                parts["angles"],
                parts["trans"],
                parts["gamma"],
                CameraConfig(),
            )
        render_img = out.image[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy()
        mask = out.mask[0, 0].float().cpu().numpy()
        crop_to_photo = face.aligned.transform.matrix_to_original  # to the working photo
        overlay, scale = overlay_on_photo(
            face.photo, render_img, mask, crop_to_photo, self.options.overlay_size
        )
        to_work = np.asarray(face.scale) * scale  # photo file pixels -> overlay pixels
        marks = [(rec.detected_lm68, (0, 255, 0) if rec.fit_lm68 is None else (128, 128, 128))]
        if rec.fit_lm68 is not None:
            marks.append((rec.fit_lm68, (255, 255, 0)))
        for points, color in (*marks, (rec.lm68, (255, 0, 0))):
            overlay = draw_landmarks(overlay, (points + 0.5) * to_work - 0.5, color=color)
        save_png(path, overlay, overwrite=self.options.overwrite)


def reconstruct(
    images,
    method: str | None = None,
    *,
    model: str = "bfm-lite",
    as_set: bool = False,
    all_faces: bool = False,
    detector: str | None = None,
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
        detector: None (:func:`default_detector`), ``"fast"`` (MediaPipe's face box and
            dlib's 68 points, then the fallbacks), ``"auto"`` (dlib's HOG, then the fallbacks
            of :class:`facerecon.detect.FallbackDetector`), ``"dlib"``, ``"mmod"`` or
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
    det = detector_for(recon.options.detector, second_opinion=recon.method.uses_more_landmarks)
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
    size = recon.options.batch_size or default_batch_size(recon.method)
    groups = [faces] if as_set else [faces[k : k + size] for k in range(0, len(faces), size)]
    out: list[Reconstruction] = []
    for group in groups:
        for face, res in zip(group, estimate_faces(recon, group, as_set), strict=True):
            if res.error is not None:
                raise FaceReconError(f"{face.name}: {res.error}")
            rec = recon.reconstruction(face, res.coeffs, res.seconds, res.confidence, res.replaced)
            out.append(rec)
    return out


def resolve_options(options: ReconstructOptions) -> ReconstructOptions:
    """Fill in what the user left to defaults (``facerecon.nets.shipped``):

    - ``weights``: the R-Net shipped for ``model`` when the method may use one;
    - ``method``: ``auto`` when R-Net weights are known, else ``fit``;
    - ``cnet``: with ``as_set``, an R-Net method and the shipped R-Net, the C-Net shipped for
      ``model`` (it was trained on that R-Net's features, never paired with another).

    - ``detector``: :func:`default_detector`.

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
    detector = options.detector or default_detector(options.views)
    return dataclasses.replace(
        options, weights=weights, method=method, cnet=cnet, detector=detector
    )


def default_detector(views: bool = False) -> str:
    """The detector when none is named: :data:`facerecon.detect.DEFAULT_DETECTOR` (``fast``)
    for photos and image sets, :data:`facerecon.detect.VIEWS_DETECTOR` (``auto``) for
    ``--views``."""
    from facerecon.detect.faces import DEFAULT_DETECTOR, VIEWS_DETECTOR

    return VIEWS_DETECTOR if views else DEFAULT_DETECTOR


def method_spec(options: ReconstructOptions):
    """The :class:`facerecon.methods.MethodSpec` of resolved options."""
    from facerecon.methods import MethodSpec

    return MethodSpec(
        weights=options.weights,
        mvr_weights=options.mvr_weights,
        pgn_weights=options.pgn_weights,
        shipped=options.shipped,
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
    texture=None,
    replaced: tuple[str, np.ndarray] | None = None,
):
    """:meth:`Reconstructor.write` as one stage: on failure the files it created for this
    face are removed (files that existed before are left as they are) and a one-line
    :class:`FaceReconError` is raised. The time goes to ``face.stages`` (``write``)."""
    opts = recon.options
    paths = list(output_paths(opts.out_dir, face.name, opts.outputs).values())
    existed = {p for p in paths if p.exists()}

    def write() -> dict:
        rec = recon.reconstruction(face, coeffs, seconds, confidence, replaced)
        return recon.write(face, rec, texture)

    before = face.stages.seconds.get("texture", 0.0)
    start = time.perf_counter()
    try:
        entry = run_stage("writing outputs", write)
    except FaceReconError:
        for p in paths:
            if p not in existed:
                with contextlib.suppress(OSError):  # a read-only folder: nothing to remove
                    p.unlink(missing_ok=True)
        raise
    finally:  # the texture has its own stage
        texture = face.stages.seconds.get("texture", 0.0) - before
        face.stages.add("write", time.perf_counter() - start - texture)
    entry["index"] = face.index
    entry["stages"] = face.stages.as_dict()
    return entry


@dataclass
class FaceEstimate:
    """One face's share of a batch estimate: its coefficients and confidence, or the one-line
    reason it failed."""

    coeffs: torch.Tensor | None
    confidence: float | None = None
    seconds: float = 0.0
    error: str | None = None
    # (source, (68, 2) crop pixels): landmarks fitted in place of the detected ones
    replaced: tuple[str, np.ndarray] | None = None


def estimate_faces(
    recon: Reconstructor, faces: list[PreparedFace], shared_identity: bool
) -> list[FaceEstimate]:
    """The method on ``faces`` as one batch (one identity when ``shared_identity``).

    The batch's seconds are shared equally by its faces (``stages``: network, fit). When a
    batch of independent faces fails, each face is tried alone, so one bad face fails alone;
    a failed set fails every face with the same reason.
    """
    stage = ("joint " if shared_identity else "") + recon.method.stage
    start = time.perf_counter()
    try:
        est = run_stage(stage, recon.estimate, faces, shared_identity=shared_identity)
    except FaceReconError as exc:
        if shared_identity or len(faces) == 1:
            return [FaceEstimate(None, error=str(exc)) for _ in faces]
        return [r for f in faces for r in estimate_faces(recon, [f], False)]
    n = len(faces)
    seconds = (time.perf_counter() - start) / n
    conf = [None] * n if est.confidences is None else est.confidences.tolist()
    for face in faces:
        face.stages.merge({k: v / n for k, v in est.stages.items()})
    replaced = {
        row: (source, lm.detach().cpu().double().numpy())
        for row, (source, lm) in est.replaced_lm68.items()
    }
    return [
        FaceEstimate(c, k, seconds, replaced=replaced.get(row))
        for row, (c, k) in enumerate(zip(est.coeffs, conf, strict=True))
    ]


def shard_indices(n: int, shard: tuple[int, int] | None) -> list[int]:
    """Positions (of ``n`` inputs in :func:`collect_inputs` order) that shard ``(i, k)``
    takes: ``i, i + k, i + 2k, ...`` (the shards are disjoint, cover every input, and differ
    in size by at most one photo); all of them without a shard."""
    if shard is None:
        return list(range(n))
    i, k = shard
    if not (k >= 1 and 0 <= i < k):
        raise FaceReconError(f"--shard {i}/{k}: use I/N with 0 <= I < N")
    return list(range(i, n, k))


def parse_shard(text: str) -> tuple[int, int]:
    """``"1/4"`` -> ``(1, 4)``; a one-line error otherwise."""
    try:
        i, k = (int(x) for x in text.split("/"))
    except ValueError:
        raise FaceReconError(f"--shard {text!r}: use I/N, e.g. 0/4 (the first of 4)") from None
    shard_indices(0, (i, k))  # checks the range
    return i, k


class _Progress:
    """The run's messages and progress bar: a line per photo in input order once its faces
    are written (or it failed), and the failures in ``summary.failed``."""

    def __init__(self, summary, paths, order, progress, show, bar, on_photo_done):
        self.summary, self.paths, self.progress, self.show = summary, paths, progress, show
        self.bar, self.on_photo_done = bar, on_photo_done
        self.order = list(order)
        self.rank = {i: k for k, i in enumerate(self.order)}
        self.finished: dict[int, str] = {}
        self.next = 0
        self.faces: dict[int, list[int]] = {}  # photo -> [faces pending, faces written]
        self.lines: dict[int, list[str]] = {}  # photo -> its failure lines, said in order

    def tag(self, i: int) -> str:
        return f"[{i + 1}/{len(self.paths)}] {self.paths[i]}"

    def say(self, msg: str) -> None:
        if self.progress:
            self.progress(msg)
        if self.show:
            self.bar.write(msg, file=sys.stderr)

    def fail(self, i: int, message: str) -> None:
        self.summary.failed.append((str(self.paths[i]), message))
        self.lines.setdefault(i, []).append(f"{self.tag(i)}: FAILED: {message}")

    def photo_failed(self, i: int, message: str) -> None:
        self.fail(i, message)
        self._finish(i, None)

    def expect(self, i: int, n_faces: int) -> None:
        self.faces[i] = [n_faces, 0]

    def face_done(self, i: int, entry: dict | None, message: str | None = None) -> None:
        """A face of photo ``i`` was written (``entry``) or failed (``message``)."""
        if entry is not None:
            self.summary.written.append(entry)
            self.faces[i][1] += 1
        else:
            self.fail(i, message or "failed")
        self.faces[i][0] -= 1
        if self.faces[i][0] == 0:
            n_ok = self.faces[i][1]
            self._finish(i, f"{self.tag(i)}: {n_ok}/{n_ok + self._failed_faces(i)} face(s) written")

    def _failed_faces(self, i: int) -> int:
        return len(self.lines.get(i, ()))

    def detected(self, i: int, n_faces: int) -> None:
        """With ``--set``: photo ``i`` is detected (its faces wait for the joint estimate)."""
        self._finish(i, f"{self.tag(i)}: {n_faces} face(s) found")

    def _finish(self, i: int, line: str | None) -> None:
        self.finished[i] = line or ""
        while self.next < len(self.order) and self.order[self.next] in self.finished:
            k = self.order[self.next]
            said = [t for t in [*self.lines.pop(k, ()), self.finished.pop(k)] if t]
            for text in said:
                self.say(text)
            self.bar.update(1)
            if self.on_photo_done is not None:
                self.on_photo_done("\n".join(said))
            self.next += 1


def run(
    inputs: list[str],
    options: ReconstructOptions,
    progress: Callable[[str], None] | None = None,
    show_progress: bool = False,
    on_photo_done: Callable[[str], None] | None = None,
    worker: ForkedPool | None = None,
) -> RunSummary:
    """Reconstruct every face in ``inputs``; bad inputs are reported and skipped.

    Every output the run may write is checked before any work (refused unless
    ``options.overwrite``). Each input's stages (load, detect, align, fit, write) fail for
    that input only: ``summary.failed`` gets ``(path, one-line reason)`` and the batch goes on.

    Photos flow through three stages at once (``options.threads``): a background thread
    loads, detects and aligns the next photos, the method estimates batches of
    ``options.batch_size`` faces (a fit's batches side by side when there are two or more,
    :func:`fit_lanes`), and another thread writes the finished ones. With
    ``options.shard`` only that part of the inputs is done (:func:`shard_indices`).

    ``show_progress`` draws a progress bar on stderr that advances when a photo's work is
    done (with ``as_set``: one step per photo's detection, then one for the joint fit);
    ``progress`` receives one line per input; ``on_photo_done`` is called (with that line)
    whenever a photo is finished, for a caller's own progress display. ``worker``: a
    :func:`start_prepare_worker` pool, which then loads, detects and aligns the photos
    (same results, on other cores) instead of the background thread.
    """

    start = time.perf_counter()
    options = resolve_options(options)
    summary = RunSummary(method=options.method or "", model=options.model)
    paths, missing = collect_inputs(inputs, summary.notes)
    summary.failed.extend(missing)
    if not paths:
        detail = "; ".join(message for _, message in missing) or "no paths given"
        raise ImageError(f"no input images found ({detail})")
    names = unique_names(paths)
    picked = shard_indices(len(paths), options.shard)
    if options.shard is not None and options.shard[0] != 0:
        summary.failed = []  # arguments that matched nothing: reported by shard 0 alone
        summary.notes = []
    out_dir = options.out_dir
    report = options.report and options.shard is None
    summary_path = out_dir / summary_name(options.shard)
    lock = OutputLock(out_dir, options.shard) if options.lock else contextlib.nullcontext()
    with lock:
        check_writable(out_dir)
        if options.resume:
            done = completed_photos(out_dir, summary_path, paths, names, picked, options.outputs)
            summary.written = [e for i in picked for e in done.get(i, ())]
            picked = [i for i in picked if i not in done]
            options = dataclasses.replace(options, overwrite=True)
        check_outputs_free(
            existing_outputs(out_dir, [names[i] for i in picked], options.all_faces, report,
                             options.outputs, summary_path.name),
            options.overwrite,
        )  # fmt: skip
        return _run_locked(
            options, summary, paths, names, picked, summary_path, report, start,
            (progress, show_progress, on_photo_done), worker,
        )  # fmt: skip


def completed_photos(
    out_dir: Path,
    summary_path: Path,
    paths: list[Path],
    names: list[str],
    picked: list[int],
    outputs: tuple[str, ...],
) -> dict[int, list[dict]]:
    """``--resume``: the photos (positions in ``paths``) an earlier run into ``out_dir``
    completed, with their summary entries: those its summary lists as written (same source)
    whose files are all there; without a summary, single-face photos whose every output
    file is there."""
    old: list[dict] = []
    for path in dict.fromkeys([summary_path, out_dir / SUMMARY_NAME]):
        if path.is_file():
            with contextlib.suppress(OSError, ValueError, AttributeError):
                old += json.loads(path.read_text()).get("written", [])
    done: dict[int, list[dict]] = {}
    for i in picked:
        entries = [e for e in old if e.get("source") == str(paths[i])]
        if entries and all(Path(p).is_file() for e in entries for p in e["paths"].values()):
            done[i] = entries
        elif not old:
            files = output_paths(out_dir, names[i], outputs).values()
            if all(p.is_file() for p in files):
                done[i] = []
    return done


def _run_locked(
    options, summary, paths, names, picked, summary_path, report, start, show, worker=None
):
    """:func:`run`'s work once the output folder is held and checked."""
    from tqdm import tqdm

    from facerecon.methods import method_class

    progress, show_progress, on_photo_done = show
    out_dir = options.out_dir
    preparer = PhotoPreparer(
        paths,
        names,
        options.detector,
        method_class(options.method).uses_more_landmarks,
        options.all_faces,
        options.max_side,
    )
    if worker is not None:  # the first photos are detected while the models load
        stream = worker.map(preparer, picked)
    recon = Reconstructor(options)
    batch_size = options.batch_size or default_batch_size(recon.method)
    bar = tqdm(
        total=len(picked) + (1 if options.as_set else 0),
        disable=not show_progress,
        unit="step" if options.as_set else "photo",
        desc="detect" if options.as_set else "reconstruct",
        file=sys.stderr,
        mininterval=0,
    )
    track = _Progress(summary, paths, picked, progress, show_progress, bar, on_photo_done)
    taken = set(names)

    writer = Ordered(options.threads, options.write_threads or default_write_threads(recon.method))

    def collect(wait: bool) -> None:
        for (i, name), entry, exc in writer.drain() if wait else writer.done():
            track.face_done(i, entry, None if exc is None else f"{name}: {exc}")

    lanes = fit_lanes(recon.method, len(picked), batch_size, options)
    estimator = Ordered(lanes > 1, lanes)  # lanes > 1: fit batches side by side

    def write_estimates(batch: list[PreparedFace], results: list[FaceEstimate]) -> None:
        for face, res in zip(batch, results, strict=True):
            if res.error is not None:
                track.face_done(face.index, None, f"{face.name}: {res.error}")
            else:
                job = (write_face, recon, face, res.coeffs, res.seconds, res.confidence)
                writer.submit((face.index, face.name), *job)

    def estimated(keep: int) -> None:
        """Hand fitted batches to the writer, waiting until at most ``keep`` are in work (so
        that photos are not prepared far ahead of the fits)."""
        ready = itertools.islice(estimator.drain(), max(0, len(estimator) - keep))
        for batch, results, exc in ready:
            if exc is not None:
                raise exc  # as from the call itself: not a photo's failure
            write_estimates(batch, results)

    def flush(batch: list[PreparedFace]) -> None:
        if not batch:
            return
        estimator.submit(batch, estimate_faces, recon, batch, False)
        estimated(keep=lanes - 1)  # one lane free for the next batch
        collect(wait=False)

    if worker is None:
        stream = prefetched(preparer, picked, max(2, batch_size), options.threads)
    threads_before = torch_threads(lane_threads(lanes) or beside_workers(recon.method, worker))
    prepared: list[PreparedFace] = []
    interrupted = False
    try:
        for i, faces, exc in stream:
            if exc is not None:
                message = str(exc) if isinstance(exc, FaceReconError) else one_line(exc)
                track.photo_failed(i, message)
                continue
            if len(faces) > 1:  # NAME_faceK must not collide with another input's NAME
                faces = [dataclasses.replace(f, name=claim_name(f.name, taken)) for f in faces]
            track.expect(i, len(faces))
            prepared.extend(faces)
            if options.as_set:
                track.detected(i, len(faces))
            elif len(prepared) >= batch_size:
                flush(prepared)
                prepared = []
            collect(wait=False)
        if options.as_set:
            bar.set_description("joint fit")
            prepared = _check_set(recon, prepared, track, summary)
            if prepared:
                track.say(f"joint fit of {len(prepared)} faces as one identity")
                _joint(recon, prepared, writer, track)
            bar.update(1)
        else:
            flush(prepared)
        estimated(keep=0)
        collect(wait=True)
    except KeyboardInterrupt:
        interrupted = True  # what is written stays; the summary and report say so
    finally:
        estimator.close()  # the batches being fitted finish; their faces are not written
        torch_threads(threads_before)
        writer.close()  # lets the face being written finish: its files are whole
        if interrupted:
            with contextlib.suppress(Exception):
                collect(wait=True)
        bar.close()
    summary.stages = StageTimes()
    for entry in summary.written:
        summary.stages.merge(entry.get("stages", {}))
    summary.seconds = time.perf_counter() - start
    summary.photos = len(picked)
    summary.interrupted = interrupted
    run_stage("writing " + summary_path.name, write_summary, summary_path, summary,
              options.overwrite, options.shard)  # fmt: skip
    if report:
        summary.report = run_stage(
            "writing report.html", write_run_report, summary, out_dir / "report.html",
            options.overwrite,
        )  # fmt: skip
    if interrupted:
        raise RunInterrupted(summary)
    return summary


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run`: the faces written so far, ``summary.json`` and the report
    are on disk (``summary``); ``--resume`` carries on from there."""

    def __init__(self, summary: RunSummary):
        super().__init__("interrupted")
        self.summary = summary


#: dlib's same-person threshold on the Euclidean distance of its 128-D face descriptors
SAME_PERSON = 0.6


def set_strangers(faces: list[PreparedFace], device: str = "cpu") -> list[tuple[int, float]]:
    """``--set``: the faces that do not look like the rest, as ``(position, distance)``.

    Each face's distance is the median of its face-descriptor distances (dlib's ResNet
    descriptor, facerecon's port) to the other faces; above :data:`SAME_PERSON` (dlib's
    same-person threshold) it is reported. With two faces both get their one distance.
    """
    import torch

    from facerecon.nets.facerec import embed, load_facerec

    if len(faces) < 2:
        return []
    dev = torch.device(device)
    image = torch.from_numpy(np.stack([f.aligned.image for f in faces])).to(dev)
    image = image.permute(0, 3, 1, 2).float() / 255.0
    lm = torch.from_numpy(np.stack([f.aligned.lm68 for f in faces])).float().to(dev)
    with torch.no_grad():
        desc = embed(load_facerec(device=dev), image, lm).cpu().numpy()
    dist = np.linalg.norm(desc[:, None] - desc[None], axis=-1)
    out = []
    for k in range(len(faces)):
        d = float(np.median(np.delete(dist[k], k)))
        if d > SAME_PERSON:
            out.append((k, d))
    return out


def _check_set(recon, faces: list[PreparedFace], track, summary) -> list[PreparedFace]:
    """Warn about (``strict_set``: fail) the faces of a set that look like another person;
    returns the faces to fit."""
    strangers = run_stage("same-person check", set_strangers, faces, recon.options.device)
    drop = set()
    for k, d in strangers:
        face = faces[k]
        msg = (
            f"{face.name} does not look like the other photos of the set (median "
            f"face-descriptor distance {d:.2f} > {SAME_PERSON}, dlib's same-person threshold)"
        )
        if recon.options.strict_set:
            track.fail(face.index, msg + "; left out (--strict-set)")
            drop.add(k)
        else:
            summary.warnings.append(msg)
    return [f for k, f in enumerate(faces) if k not in drop]


def _joint(recon: Reconstructor, faces: list[PreparedFace], writer: Ordered, track) -> None:
    """One shared identity for ``faces``; a failed estimate fails every face, a failed write
    only its face. With ``--texture photo`` every face gets the texture of all the photos,
    blended by their visibility weights (:func:`facerecon.texture.photo_texture`)."""
    results = estimate_faces(recon, faces, True)
    ok = [(f, r) for f, r in zip(faces, results, strict=True) if r.error is None]
    texture = None
    if (
        ok
        and recon.options.texture == "photo"
        and {"obj", "glb", "neutral"} & set(recon.options.outputs)
    ):

        def blended():
            recs = [recon.reconstruction(f, r.coeffs, replaced=r.replaced) for f, r in ok]
            return recon.photo_texture([f for f, _ in ok], recs)

        start = time.perf_counter()
        try:
            texture = run_stage("texturing", blended)
        except FaceReconError:
            texture = None  # each face is textured from its own photo instead
        for f, _ in ok:
            f.stages.add("texture", (time.perf_counter() - start) / len(ok))
    for face, res in zip(faces, results, strict=True):
        if res.error is not None:
            track.fail(face.index, f"{face.name}: {res.error}")
            continue
        job = (write_face, recon, face, res.coeffs, res.seconds, res.confidence, texture,
               res.replaced)  # fmt: skip
        writer.submit((face.index, face.name), *job)
    for (i, name), entry, exc in writer.drain():
        if exc is None:
            track.summary.written.append(entry)
        else:
            track.fail(i, f"{name}: {exc}")
    for i in sorted(track.lines, key=track.rank.get):
        for text in track.lines.pop(i):
            track.say(text)


def _worker(inputs: list[str], options: ReconstructOptions, queue) -> None:
    """A :func:`run_workers` process: one shard, its messages sent to the parent."""
    import os

    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // options.workers))
    options = dataclasses.replace(options, workers=1)
    try:
        run(inputs, options, on_photo_done=lambda line: queue.put(("done", line)))
    except FaceReconError as exc:
        queue.put(("error", str(exc)))
    except KeyboardInterrupt:  # its summary is written; the parent merges it
        pass


def run_workers(
    inputs: list[str],
    options: ReconstructOptions,
    progress: Callable[[str], None] | None = None,
    show_progress: bool = False,
) -> RunSummary:
    """:func:`run` with the photos shared by ``options.workers`` processes: shard ``k`` of N
    (:func:`shard_indices`) in process ``k`` (this one does shard 0), each with the CPU count
    / N torch threads; then the shards' summaries are merged into ``summary.json`` (the shard
    files removed) and the report written. Same outputs as one process: each photo goes
    through the same code; only the network's batches are made of other photos. This process
    holds the output folder's lock for all of them.

    Image sets are one joint estimate: they take no workers.
    """
    import multiprocessing
    import os

    import torch
    from tqdm import tqdm

    from facerecon.shards import load_parts

    n = options.workers
    if options.as_set or options.views:
        raise FaceReconError("--workers shares independent photos; --set / --views are one job")
    if options.shard is not None:
        raise FaceReconError("--workers and --shard: give one (a shard can itself use workers "
                             "by running one process per shard)")  # fmt: skip
    start = time.perf_counter()
    options = resolve_options(options)
    notes: list[str] = []
    paths, missing = collect_inputs(inputs, notes)
    if not paths:
        detail = "; ".join(message for _, message in missing) or "no paths given"
        raise ImageError(f"no input images found ({detail})")
    names = unique_names(paths)
    out_dir = options.out_dir
    shard_files = [out_dir / summary_name((k, n)) for k in range(n)]
    with OutputLock(out_dir):
        check_writable(out_dir)
        if not options.resume:
            planned = existing_outputs(out_dir, names, options.all_faces, options.report,
                                       options.outputs)  # fmt: skip
            planned += [p for p in shard_files if p.exists()]
            check_outputs_free(planned, options.overwrite)
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        one_writer = options.write_threads or 1  # the processes fill the cores already
        shard_opts = [dataclasses.replace(options, shard=(k, n), report=False, lock=False,
                                          write_threads=one_writer)
                      for k in range(n)]  # fmt: skip
        procs = [ctx.Process(target=_worker, args=(inputs, shard_opts[k], queue), daemon=True)
                 for k in range(1, n)]  # fmt: skip
        for p in procs:
            p.start()
        bar = tqdm(total=len(paths), disable=not show_progress, unit="photo",
                   desc="reconstruct", file=sys.stderr, mininterval=0)  # fmt: skip
        errors: list[str] = []

        def show(line: str) -> None:
            if line and progress:
                progress(line)
            if line and show_progress:
                bar.write(line, file=sys.stderr)
            bar.update(1)

        def drain() -> None:
            while not queue.empty():
                kind, text = queue.get()
                if kind == "done":
                    show(text)
                else:
                    errors.append(text)

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n))
        interrupted = False
        try:
            run(inputs, shard_opts[0], on_photo_done=lambda line: (show(line), drain()))
        except KeyboardInterrupt:
            interrupted = True  # the workers got the signal too: they write their summaries
        try:
            deadline = time.monotonic() + (60.0 if interrupted else float("inf"))
            while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
                drain()
                time.sleep(0.05)
            drain()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
                p.join()
            bar.close()
        if errors:
            raise FaceReconError(f"a worker stopped: {errors[0]}")
        crashed = [k for k, p in zip(range(1, n), procs, strict=True) if p.exitcode != 0]
        if crashed and not interrupted:
            raise FaceReconError(
                f"worker {crashed[0]} of {n} exited with code {procs[crashed[0] - 1].exitcode}"
            )
        present = [p for p in shard_files if p.is_file()]
        summary = merged_summary(load_parts(present), strict=not interrupted)
        summary.seconds = time.perf_counter() - start
        summary.interrupted = interrupted
        summary.notes = notes
        write_summary(
            out_dir / SUMMARY_NAME, summary, True if options.resume else options.overwrite
        )
        for p in present:
            p.unlink()
        if options.report:
            summary.report = run_stage(
                "writing report.html", write_run_report, summary, out_dir / "report.html",
                options.overwrite or options.resume,
            )  # fmt: skip
    if interrupted:
        raise RunInterrupted(summary)
    return summary


def merged_summary(parts: list[dict], strict: bool = True) -> RunSummary:
    """The :class:`RunSummary` of shard summaries (:func:`facerecon.shards.merge_summaries`;
    ``strict=False``: some shards may be missing, as after an interrupt)."""
    from facerecon.shards import merge_summaries

    data = merge_summaries(parts, strict=strict)
    summary = RunSummary(written=data["written"], failed=[tuple(f) for f in data["failed"]])
    summary.stages = StageTimes(data["stages"])
    summary.seconds, summary.photos = data["seconds"], data["photos"]
    summary.method, summary.model = parts[0].get("method", ""), parts[0].get("model", "")
    return summary


def merge_shards(
    folders: list[Path], out_dir: Path | None = None, overwrite: bool = False, report: bool = True
) -> RunSummary:
    """``facerecon merge``: join the shard summaries found in ``folders`` (the
    ``summary.shard-I-of-N.json`` of ``reconstruct --shard``) into ``out_dir/summary.json``
    (default: the first folder) and write the report there; the shard files stay."""
    from facerecon.io import report_conflicts
    from facerecon.shards import find_shard_summaries, load_parts

    out_dir = Path(out_dir or folders[0])
    summary = merged_summary(load_parts(find_shard_summaries(folders)))
    planned = [out_dir / SUMMARY_NAME] + (report_conflicts(out_dir) if report else [])
    check_outputs_free([p for p in planned if p.exists()], overwrite)
    prepare_out_dir(out_dir)
    write_summary(out_dir / SUMMARY_NAME, summary, overwrite)
    if report:
        summary.report = write_run_report(summary, out_dir / "report.html", overwrite)
    return summary


def write_summary(
    path: Path, summary: RunSummary, overwrite: bool, shard: tuple[int, int] | None = None
) -> Path:
    """``summary.json``: ``{"written": [...], "failed": [[path, reason], ...], "stages":
    {stage: seconds summed over the faces}, "seconds": wall time, "photos": n}`` (and the
    ``shard`` ``[i, n]`` of a shard's summary)."""
    from facerecon.io import ensure_writable

    path = ensure_writable(path, overwrite)
    data = {
        "written": summary.written,
        "failed": [list(f) for f in summary.failed],
        "stages": summary.stages.as_dict(),
        "seconds": round(summary.seconds, 3),
        "photos": summary.photos,
    }
    if shard is not None:
        data["shard"] = list(shard)
    if summary.interrupted:
        data["interrupted"] = True
    if summary.warnings:
        data["warnings"] = summary.warnings
    if summary.notes:
        data["notes"] = summary.notes
    data["method"], data["model"] = summary.method, summary.model
    return atomic_write_text(path, json.dumps(data, indent=2))


def write_run_report(summary: RunSummary, path: Path, overwrite: bool = False) -> Path:
    """``report.html`` (and ``viewer.js``) of a run's summary, in ``path``'s folder."""
    from facerecon.io import ReportEntry, write_report

    entries = []
    for item in summary.written:
        p = item["paths"]
        warning = [w for w in summary.warnings if w.startswith(item["name"] + " ")]
        entries.append(
            ReportEntry(
                name=item["name"],
                photo_path=item["source"],
                overlay_path=p.get("overlay"),
                glb_path=p.get("glb"),
                status="ok",
                confidence=item.get("confidence"),
                meta={
                    "model": summary.model,
                    "method": summary.method,
                    "seconds": round(item["seconds"], 2),
                    "landmark error (px)": round(item["landmark_error_px"], 2),
                    "detector": item.get("detector", ""),
                    **landmarks_note(item),
                    **({"warning": warning[0]} if warning else {}),
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
    return write_report(path.parent, entries, overwrite=overwrite)

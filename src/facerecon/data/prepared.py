"""``facerecon prepare DIR``: detect, align and store training crops once.

Layout of the output folder (one sub-folder per person is preserved from the input)::

    out_dir/<person>/<name>.npz    image (224, 224, 3) uint8, lm68 (68, 2) float32,
                                   attention (224, 224) float16 (skin attention),
                                   crop (5,) float64 [w0, h0, s, tx, ty], source (str);
                                   synthetic items add their truth: lm_depth (68,),
                                   angles (3,), id_coeff, exp_coeff
    out_dir/rejected.txt           "<relative path>\t<reason>" per image that was skipped

Re-running skips images whose npz exists or that were rejected before (``retry_rejected``
tries those again), so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facerecon.errors import FaceReconError
from facerecon.fileio import atomic_savez, atomic_write_text
from facerecon.io.paths import prepare_out_dir

__all__ = [
    "IMAGE_SUFFIXES",
    "PrepareReport",
    "list_images",
    "main_prepare",
    "prepare_folder",
    "read_item",
    "read_rejected",
    "write_item",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
REJECTED = "rejected.txt"


@dataclass
class PrepareReport:
    """Counts of one :func:`prepare_folder` run and the rejected items (relative path, reason)."""

    written: int = 0
    skipped: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.written + self.skipped + len(self.rejected)


def list_images(src_dir: str | os.PathLike[str]) -> list[Path]:
    """Image files under ``src_dir`` (recursive, sorted), relative to it."""
    root = Path(src_dir)
    return sorted(
        p.relative_to(root)
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def write_item(
    path: str | os.PathLike[str],
    image: np.ndarray,
    lm68: np.ndarray,
    attention: np.ndarray | None = None,
    crop: np.ndarray | None = None,
    source: str = "",
    extra: dict[str, np.ndarray] | None = None,
) -> Path:
    """Store one aligned face atomically (see the module docstring for the fields); ``extra``:
    more named arrays (synthetic truth: ``lm_depth``, ``angles``, ``id_coeff``, ``exp_coeff``)."""
    arrays = {
        "image": np.asarray(image, np.uint8),
        "lm68": np.asarray(lm68, np.float32),
        "source": np.asarray(source),
    }
    if attention is not None:
        arrays["attention"] = np.asarray(attention, np.float16)
    if crop is not None:
        arrays["crop"] = np.asarray(crop, np.float64)
    for k, v in (extra or {}).items():
        arrays[k] = np.asarray(v)
    return atomic_savez(path, arrays)


def read_item(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load one stored face: ``image``, ``lm68`` and, when stored, ``attention``/``crop``."""
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise FaceReconError(f"cannot read prepared face {path}: {type(exc).__name__}") from exc


def read_rejected(out_dir: str | os.PathLike[str]) -> dict[str, str]:
    """``relative path -> reason`` from ``out_dir/rejected.txt`` (empty when absent)."""
    p = Path(out_dir) / REJECTED
    if not p.is_file():
        return {}
    out = {}
    for line in p.read_text().splitlines():
        if "\t" in line:
            rel, reason = line.split("\t", 1)
            out[rel] = reason
    return out


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return (msg[0] if msg else type(exc).__name__).replace("\t", " ")


def prepare_folder(
    src_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    backend: str = "dlib",
    detector: str = "hog",
    size: int = 224,
    attention: bool = True,
    retry_rejected: bool = False,
    progress: bool = False,
    on_item: Callable[[str, str], None] | None = None,
) -> PrepareReport:
    """Detect the largest face of every image, align it and store crop, landmarks, attention.

    Args:
        src_dir: images, optionally one sub-folder per person (kept in ``out_dir``).
        out_dir: output folder (created); may be inside ``src_dir``'s parent, not inside it.
        backend, detector: passed to ``facerecon.detect.detect_one``.
        size: crop side (224 for the R-Net).
        attention: also store the skin attention of the crop (saves it at training time).
        retry_rejected: try images listed in ``rejected.txt`` again.
        progress: tqdm bar.
        on_item: callback ``(relative path, "written" | "skipped" | "rejected: <reason>")``.

    Returns:
        :class:`PrepareReport`.

    Raises:
        FaceReconError: ``src_dir`` does not exist.
    """
    from facerecon.detect import align, detect_one, load_image

    src, out = Path(src_dir), Path(out_dir)
    if not src.is_dir():
        raise FaceReconError(f"not a folder: {src}")
    prepare_out_dir(out)
    out_resolved = out.resolve()
    items = [rel for rel in list_images(src) if out_resolved not in (src / rel).resolve().parents]
    rejected_all = read_rejected(out)
    rejected_before = {} if retry_rejected else dict(rejected_all)
    report = PrepareReport()
    bar = items
    if progress:
        from tqdm import tqdm

        bar = tqdm(items, desc="prepare", unit="img")
    for rel in bar:
        key = rel.as_posix()
        target = out / rel.with_suffix(".npz")
        if target.is_file() or key in rejected_before:
            report.skipped += 1
            if on_item:
                on_item(key, "skipped")
            continue
        try:
            image = load_image(src / rel)
            face = detect_one(image, backend=backend, detector=detector, name=rel.name)
            aligned = align(image, face.lm68, size=size)
            att = None
            if attention:
                from facerecon.skin import skin_attention, skin_probability

                att = skin_attention(skin_probability(aligned.image))
            write_item(
                target,
                aligned.image,
                aligned.lm68,
                att,
                aligned.transform.as_paper_params(),
                key,
            )
        except (FaceReconError, ValueError, OSError) as exc:
            reason = _one_line(exc)
            report.rejected.append((key, reason))
            rejected_all[key] = reason
            _write_rejected(out, rejected_all)
            if on_item:
                on_item(key, f"rejected: {reason}")
            continue
        rejected_all.pop(key, None)
        report.written += 1
        if on_item:
            on_item(key, "written")
    _write_rejected(out, rejected_all)
    return report


def _write_rejected(out: Path, rejected: dict[str, str]) -> None:
    text = "".join(f"{k}\t{v}\n" for k, v in sorted(rejected.items()))
    atomic_write_text(out / REJECTED, text)


def main_prepare(argv: Sequence[str] | None = None) -> int:
    """``facerecon prepare SRC OUT [--backend dlib|mediapipe] [--detector hog|mmod]
    [--size 224] [--no-attention] [--retry-rejected] [--quiet]``."""
    ap = argparse.ArgumentParser(
        prog="facerecon prepare",
        description="Detect, align (224 crops) and store faces with 68 landmarks and skin "
        "attention for R-Net training; resumable.",
    )
    ap.add_argument("src", help="folder of photos (sub-folders = persons)")
    ap.add_argument("out", help="output folder (npz per face, rejected.txt)")
    ap.add_argument("--backend", default="dlib", choices=("dlib", "mediapipe"))
    ap.add_argument("--detector", default="hog", choices=("hog", "mmod"))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--no-attention", action="store_true", help="do not store skin attention")
    ap.add_argument("--retry-rejected", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument(
        "--views",
        action="store_true",
        help="multi-view training data (facerecon train mvr): SRC holds one folder per capture "
        "with 1 to 3 photos of one face; OUT gets one view triple per folder",
    )
    ap.add_argument("--face-model", default="bfm-lite", help="for the yaw that orders the views")
    args = ap.parse_args(argv)
    if args.views:
        from facerecon.data.view_triples import prepare_view_folders

        try:
            n, skipped, rejected = prepare_view_folders(
                args.src, args.out, args.face_model, size=args.size
            )
        except FaceReconError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for name, reason in rejected:
            print(f"rejected: {name}: {reason}", file=sys.stderr)
        print(f"prepared {n} view triples, {skipped} already done, {len(rejected)} rejected")
        return 0
    try:
        rep = prepare_folder(
            args.src,
            args.out,
            backend=args.backend,
            detector=args.detector,
            size=args.size,
            attention=not args.no_attention,
            retry_rejected=args.retry_rejected,
            progress=not args.quiet,
        )
    except FaceReconError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"prepared {rep.written} new, {rep.skipped} already done, {len(rep.rejected)} rejected "
        f"(see {Path(args.out) / REJECTED})"
    )
    return 0

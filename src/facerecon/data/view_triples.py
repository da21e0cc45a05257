"""Multi-view training data: synthetic view triples (left, front, right) of one face.

:func:`write_view_triples` renders triples with the synthetic engine
(:meth:`facerecon.data.synthetic.SyntheticFaces.triple`: shared identity, expression, camera and
light, per-view yaw, occluders and degradations), aligns each view like a photo
(:func:`facerecon.detect.align` from its 2D landmarks) and stores one ``.npz`` per triple::

    out_dir/t_000012.npz   image (3, S, S, 3) uint8, lm68 (3, 68, 2) crop px,
                           parse (3, S, S) uint8 (facerecon.labels.Region, from the landmarks,
                           as for a photo), yaw (3,) deg, lm68_3d (68, 3) mm model space
                           (identity + expression), id_coeff, exp_coeff, source

Yaws: a spread ``s`` drawn uniformly from ``spread_deg`` per triple, views at
``(-s, 0, s)`` plus a uniform jitter of ``jitter_deg`` each, so the slots are always ordered
left < front < right. Items are written atomically and existing ones are skipped (resumable,
parallel over disjoint index ranges). :class:`ViewTripleDataset` reads such a folder for the
training engine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from facerecon.errors import FaceReconError
from facerecon.fileio import atomic_savez

__all__ = [
    "ViewTripleDataset",
    "prepare_view_folders",
    "triple_path",
    "triple_yaws",
    "write_triples_card",
    "write_view_triples",
]


def triple_path(out_dir: str | os.PathLike[str], index: int) -> Path:
    """Where :func:`write_view_triples` stores triple ``index``."""
    return Path(out_dir) / f"t_{int(index):06d}.npz"


def triple_yaws(
    rng: np.random.Generator, spread_deg=(20.0, 60.0), jitter_deg: float = 5.0
) -> tuple[float, float, float]:
    """``(-s, 0, s)`` + jitter, ``s ~ U(spread_deg)`` (degrees)."""
    s = float(rng.uniform(*spread_deg))
    j = rng.uniform(-jitter_deg, jitter_deg, 3)
    return (-s + j[0], j[1], s + j[2])


def write_view_triples(
    out_dir: str | os.PathLike[str],
    faces,
    indices: Iterable[int],
    size: int = 224,
    spread_deg=(20.0, 60.0),
    jitter_deg: float = 5.0,
    on_item: Callable[[Path], None] | None = None,
) -> tuple[int, int]:
    """Render, align and store triples ``indices`` (triple ``i`` is identity ``i``).

    Args:
        out_dir: folder (created).
        faces: a :class:`facerecon.data.synthetic.SyntheticFaces` engine.
        indices: triple numbers (disjoint ranges can run in parallel).
        size: aligned crop side (224).
        spread_deg, jitter_deg: yaw spread range and per-view jitter (:func:`triple_yaws`).
        on_item: called with each item's path (progress).

    Returns:
        ``(written, skipped)``.
    """
    from facerecon.detect import align
    from facerecon.detect.parsing import parse_from_landmarks

    written = skipped = 0
    for i in indices:
        path = triple_path(out_dir, i)
        if path.is_file():
            skipped += 1
        else:
            rng = np.random.default_rng([int(faces.seed), 7321, int(i)])
            yaws = triple_yaws(rng, spread_deg, jitter_deg)
            views = faces.triple(int(i), yaws_deg=yaws)
            crops, lms, parses = [], [], []
            for v in views:
                al = align(np.asarray(v.image), np.asarray(v.lm68), size=size)
                crops.append(al.image)
                lms.append(al.lm68.astype(np.float32))
                parses.append(parse_from_landmarks(al.lm68, size).astype(np.uint8))
            arrays = {
                "image": np.stack(crops).astype(np.uint8),
                "lm68": np.stack(lms),
                "parse": np.stack(parses),
                "yaw": np.asarray(yaws, np.float32),
                "lm68_3d": np.asarray(views[0].lm68_3d, np.float32),
                "id_coeff": np.asarray(views[0].coeffs["id_coeff"], np.float32),
                "exp_coeff": np.asarray(views[0].coeffs["exp_coeff"], np.float32),
                "source": np.asarray(f"synthetic:{faces.model.name}:{faces.seed}:{int(i)}"),
            }
            atomic_savez(path, arrays, compressed=True)
            written += 1
        if on_item is not None:
            on_item(path)
    return written, skipped


def write_triples_card(
    out_dir: str | os.PathLike[str], faces, n: int, spread_deg, jitter_deg, command: str
) -> Path:
    """``out_dir/triples.json``: model, seed, engine config and the command line."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    card = {
        "kind": "facerecon synthetic view triples",
        "model": faces.model.name,
        "seed": int(faces.seed),
        "n_triples": int(n),
        "spread_deg": list(spread_deg),
        "jitter_deg": float(jitter_deg),
        "config": asdict(faces.config),
        "command": command,
    }
    path = out / "triples.json"
    path.write_text(json.dumps(card, indent=1) + "\n")
    return path


class ViewTripleDataset(Dataset):
    """Triples of a folder (``t_*.npz``; or the folders of ``facerecon prepare --views``,
    which have the same fields without the 3D ones).

    Items: ``image (3, 3, S, S)`` float 0..1, ``lm68 (3, 68, 2)``, ``parse (3, S, S)`` int64,
    ``yaw (3,)``, ``present (3,)`` bool (the filled slots; view dropout is the trainer's),
    ``index``; with 3D ground truth also ``lm68_3d (68, 3)`` and ``has_3d`` True (else zeros
    and False), and the synthetic truth's ``id_coeff`` / ``exp_coeff`` (empty when absent).

    Args:
        root: the folder.
        files: restrict to these file names (e.g. a validation split).
    """

    def __init__(self, root: str | os.PathLike[str], files: list[str] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FaceReconError(f"view-triple folder not found: {self.root}")
        names = sorted(p.name for p in self.root.glob("*.npz")) if files is None else files
        if not names:
            raise FaceReconError(f"no view triples (*.npz) in {self.root}")
        self.files = list(names)
        self.persons = list(self.files)  # one subject per triple

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:  # no augmentation to reseed
        pass

    def __getitem__(self, i: int) -> dict[str, Any]:
        path = self.root / self.files[i]
        try:
            with np.load(path) as z:
                d = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise FaceReconError(f"cannot read view triple {path}: {type(exc).__name__}") from exc
        has_3d = "lm68_3d" in d
        coeffs = {
            k: torch.from_numpy(d[k]).float() if k in d else torch.zeros(0)
            for k in ("id_coeff", "exp_coeff")
        }
        return {
            **coeffs,
            "image": torch.from_numpy(d["image"]).permute(0, 3, 1, 2).float() / 255.0,
            "lm68": torch.from_numpy(d["lm68"]).float(),
            "parse": torch.from_numpy(d["parse"].astype(np.int64)),
            "yaw": torch.from_numpy(d["yaw"]).float(),
            "present": torch.from_numpy(d["present"].astype(bool))
            if "present" in d
            else torch.ones(3, dtype=torch.bool),
            "lm68_3d": torch.from_numpy(d["lm68_3d"]).float() if has_3d else torch.zeros(68, 3),
            "has_3d": torch.tensor(has_3d),
            "index": torch.tensor(i),
        }


def prepare_view_folders(
    src_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    face_model: str = "bfm-lite",
    detector: str = "auto",
    size: int = 224,
    on_item: Callable[[str, str], None] | None = None,
) -> tuple[int, int, list[tuple[str, str]]]:
    """``facerecon prepare --views``: one triple per sub-folder of ``src_dir`` (1 to 3 photos of
    one face taken together, any names and order).

    Each photo's largest face is detected (``detector``, the product's chain by default) and
    aligned; the views are put into the left / front / right slots by their yaw (a landmark fit
    of ``face_model``, :func:`facerecon.fit.pose.estimate_yaws`) and stored as
    ``out_dir/<folder>.npz`` with :func:`write_view_triples`'s fields (``present (3,)`` marks
    the filled slots; no 3D fields). A folder whose photos all fail, or that has more than 3
    photos, is rejected with its reason; a photo without a face is dropped from its triple.

    Returns:
        ``(written, skipped, rejected [(folder, reason)])``.

    Raises:
        FaceReconError: ``src_dir`` is not a folder or has no sub-folders with photos.
    """
    from facerecon.data.prepared import list_images
    from facerecon.detect import align, detect_one, detector_for, load_image
    from facerecon.detect.parsing import parse_from_landmarks
    from facerecon.fit.pose import estimate_yaws
    from facerecon.morphable import load_face_model
    from facerecon.nets.mvr import slot_order

    src, out = Path(src_dir), Path(out_dir)
    if not src.is_dir():
        raise FaceReconError(f"not a folder: {src}")
    folders = sorted(p for p in src.iterdir() if p.is_dir() and list_images(p))
    if not folders:
        raise FaceReconError(
            f"{src} has no sub-folders with photos: --views wants one folder per capture "
            "(1 to 3 photos of one face each)"
        )
    det = detector_for(detector)
    model = load_face_model(face_model)
    written = skipped = 0
    rejected: list[tuple[str, str]] = []
    for folder in folders:
        path = out / f"{folder.name}.npz"
        if path.is_file():
            skipped += 1
            continue
        photos = list_images(folder)
        if len(photos) > 3:
            rejected.append((folder.name, f"{len(photos)} photos (at most 3 views)"))
            continue
        crops, lms = [], []
        for rel in photos:
            try:
                image = load_image(folder / rel)
                face = detect_one(image, detector_obj=det, name=rel.name)
            except (FaceReconError, ValueError, OSError) as exc:
                if on_item:
                    on_item(f"{folder.name}/{rel}", f"dropped: {exc}")
                continue
            al = align(image, face.lm68, size=size)
            crops.append(al.image)
            lms.append(al.lm68.astype(np.float32))
        if not crops:
            rejected.append((folder.name, "no face found in any photo"))
            continue
        yaws = estimate_yaws(model, torch.from_numpy(np.stack(lms)).double(), size)
        slots = slot_order(yaws)
        image = np.zeros((3, size, size, 3), np.uint8)
        lm68 = np.zeros((3, 68, 2), np.float32)
        parse = np.zeros((3, size, size), np.uint8)
        yaw = np.zeros(3, np.float32)
        present = np.zeros(3, bool)
        for k, s in enumerate(slots):
            image[s], lm68[s], yaw[s], present[s] = crops[k], lms[k], yaws[k], True
            parse[s] = parse_from_landmarks(lms[k], size).astype(np.uint8)
        arrays = {"image": image, "lm68": lm68, "parse": parse, "yaw": yaw, "present": present,
                  "source": np.asarray(str(folder))}  # fmt: skip
        atomic_savez(path, arrays, compressed=True)
        written += 1
        if on_item:
            on_item(folder.name, f"written ({len(crops)} views)")
    return written, skipped, rejected

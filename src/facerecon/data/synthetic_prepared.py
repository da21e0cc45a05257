"""Synthetic faces written in the layout of ``facerecon prepare`` (training folders).

R-Net and C-Net training read folders of aligned crops (``out_dir/<person>/<name>.npz``, see
:mod:`facerecon.data.prepared`). :func:`write_prepared` fills such a folder from the synthetic
engine: one sub-folder per identity (``id_00012/``), one file per condition (``c03.npz``), so
the same folder serves R-Net training (every image) and C-Net training (image sets = persons).

Each item holds the photo aligned exactly like a real one (``facerecon.detect.align`` from the
sample's ground-truth 2D landmarks), the landmarks in crop pixels, and the skin attention of the
crop from the shipped skin classifier, so a training run never renders, aligns or classifies on
the fly. Synthetic items also carry their 3D truth (:func:`landmark_depth`, the rotation
``angles`` and the model's ``id_coeff`` / ``exp_coeff``): the 3D-landmark labels of pose-guided
training (:mod:`facerecon.train.pgn`) and the pose truth of its benchmark. Items are written
atomically and existing ones are skipped: an interrupted run resumes, and several processes
may fill disjoint identity ranges of one folder in parallel.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from facerecon.data.prepared import write_item

__all__ = ["item_path", "landmark_depth", "write_prepared", "write_prepared_card"]


def landmark_depth(sample, crop_scale: float) -> np.ndarray:
    """``(68,)`` depth of a synthetic sample's landmarks in *crop pixels*, positive towards the
    camera, relative to their mean: the third coordinate that makes ``(u, v, depth)`` a
    scaled-orthographic 3D landmark set in the crop (x, y in pixels, z on the same scale).

    ``depth_i = (z_i - mean z) * focal / D * crop_scale`` with ``z`` the landmarks' camera-frame
    z (mm), ``D`` their mean distance from the camera (mm), ``focal`` the render's (pixels) and
    ``crop_scale`` the crop's pixels per photo pixel (:class:`facerecon.detect.CropTransform`).
    """
    z = np.asarray(sample.vertices_camera, np.float64)[np.asarray(sample.landmark_indices), 2]
    dist = -z.mean()
    return ((z - z.mean()) * float(sample.camera["focal"]) / dist * float(crop_scale)).astype(
        np.float32
    )


def item_path(out_dir: str | os.PathLike[str], identity: int, condition: int) -> Path:
    """Where :func:`write_prepared` stores ``sample(identity, condition)``."""
    return Path(out_dir) / f"id_{int(identity):05d}" / f"c{int(condition):02d}.npz"


def write_prepared(
    out_dir: str | os.PathLike[str],
    faces,
    identities: Iterable[int],
    m_per_identity: int,
    size: int = 224,
    attention: bool = True,
    on_item: Callable[[Path], None] | None = None,
) -> tuple[int, int]:
    """Render, align and store ``faces.sample(i, c)`` for ``i in identities``, ``c < m``.

    Args:
        out_dir: the prepared folder (created).
        faces: a :class:`facerecon.data.synthetic.SyntheticFaces` engine.
        identities: identity numbers to write (disjoint ranges can run in parallel).
        m_per_identity: conditions (images) per identity.
        size: side of the aligned crop (224 = paper).
        attention: store the skin attention of the crop.
        on_item: called with each item's path after it is handled (progress).

    Returns:
        ``(written, skipped)`` counts (skipped: the item existed already).
    """
    from facerecon.detect import align
    from facerecon.skin import skin_attention, skin_probability

    written = skipped = 0
    for i in identities:
        for c in range(int(m_per_identity)):
            path = item_path(out_dir, i, c)
            if path.is_file():
                skipped += 1
            else:
                sample = faces.sample(int(i), c)
                al = align(np.asarray(sample.image), np.asarray(sample.lm68), size=size)
                att = skin_attention(skin_probability(al.image)) if attention else None
                write_item(
                    path,
                    al.image,
                    al.lm68,
                    att,
                    al.transform.as_paper_params(),
                    source=f"synthetic:{faces.model.name}:{faces.seed}:{int(i)}:{c}",
                    extra={
                        "lm_depth": landmark_depth(sample, al.transform.scale),
                        "angles": np.asarray(sample.coeffs["angles"], np.float32),
                        "id_coeff": np.asarray(sample.coeffs["id_coeff"], np.float32),
                        "exp_coeff": np.asarray(sample.coeffs["exp_coeff"], np.float32),
                    },
                )
                written += 1
            if on_item is not None:
                on_item(path)
    return written, skipped


def write_prepared_card(
    out_dir: str | os.PathLike[str], faces, n_identities: int, m_per_identity: int, command: str
) -> Path:
    """``out_dir/synthetic.json``: what generated the folder (model, seed, engine config, the
    command line), so a training run's data can be reproduced exactly."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    card = {
        "kind": "facerecon synthetic faces, prepared layout",
        "model": faces.model.name,
        "seed": int(faces.seed),
        "n_identities": int(n_identities),
        "m_per_identity": int(m_per_identity),
        "config": asdict(faces.config),
        "command": command,
    }
    path = out / "synthetic.json"
    path.write_text(json.dumps(card, indent=1) + "\n")
    return path

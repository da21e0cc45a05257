"""facerecon prepare: detect + align real photos into a resumable training folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from facerecon.data.datasets import PreparedFaceDataset
from facerecon.data.prepared import (
    list_images,
    main_prepare,
    prepare_folder,
    read_item,
    read_rejected,
)
from facerecon.detect.align import DEFAULT_TEMPLATE_224, fit_scale_translation, five_points
from facerecon.io import read_pts


@pytest.fixture()
def photo_dir(tmp_path: Path, faces_68pt: Path) -> Path:
    """Two persons' folders with the shared 68-point photos, a corrupt file and a blank image."""
    src = tmp_path / "src"
    (src / "alice").mkdir(parents=True)
    (src / "bob").mkdir()
    for name in ("einstein.jpg", "takeo.ppm"):
        shutil.copy(faces_68pt / name, src / "alice" / name)
    shutil.copy(faces_68pt / "breakingbad.jpg", src / "bob" / "breakingbad.jpg")
    (src / "bob" / "corrupt.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    import cv2

    cv2.imwrite(str(src / "bob" / "blank.png"), np.full((160, 160, 3), 128, np.uint8))
    return src


def test_prepare_folder_crops_landmarks_rejects_and_resumes(photo_dir, tmp_path, faces_68pt):
    out = tmp_path / "out"
    assert [p.as_posix() for p in list_images(photo_dir)] == [
        "alice/einstein.jpg",
        "alice/takeo.ppm",
        "bob/blank.png",
        "bob/breakingbad.jpg",
        "bob/corrupt.jpg",
    ]
    seen: list[tuple[str, str]] = []
    rep = prepare_folder(photo_dir, out, on_item=lambda k, s: seen.append((k, s)))
    assert rep.written == 3 and rep.skipped == 0 and len(rep.rejected) == 2
    rejected = read_rejected(out)
    assert set(rejected) == {"bob/blank.png", "bob/corrupt.jpg"}
    assert rejected["bob/blank.png"].startswith("no face found")
    assert "not an image" in rejected["bob/corrupt.jpg"]
    assert all("\n" not in r for r in rejected.values())
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npz")) == [
        "alice/einstein.npz",
        "alice/takeo.npz",
        "bob/breakingbad.npz",
    ]
    item = read_item(out / "alice" / "einstein.npz")
    assert item["image"].shape == (224, 224, 3) and item["image"].dtype == np.uint8
    assert item["lm68"].shape == (68, 2) and item["attention"].shape == (224, 224)
    assert item["attention"].min() >= 0.0 and item["attention"].max() <= 1.0
    assert float(item["attention"].astype(np.float32).mean()) > 0.1  # a face is mostly skin
    # detected landmarks vs the annotation, both mapped into the crop
    w0, h0, s, tx, ty = item["crop"]
    assert (w0, h0) == (817, 1024)
    pts = read_pts(faces_68pt / "einstein.pts")  # 0-based (the file is 1-based)
    gt = pts * s + np.array([tx, ty])
    err = np.linalg.norm(item["lm68"] - gt, axis=1).mean()
    iod = np.linalg.norm(gt[36:42].mean(0) - gt[42:48].mean(0))
    assert err / iod < 0.1
    # aligned: the best scale + shift from the crop's 5 points to the template is the identity
    scale, shift = fit_scale_translation(
        five_points(item["lm68"].astype(np.float64)), DEFAULT_TEMPLATE_224
    )
    assert abs(scale - 1.0) < 1e-3 and np.abs(shift).max() < 0.2
    assert 40 < iod < 70
    assert str(item["source"]) == "alice/einstein.jpg"

    # second run: nothing recomputed, rejected files not retried
    before = (out / "alice" / "einstein.npz").stat().st_mtime_ns
    rep2 = prepare_folder(photo_dir, out)
    assert (rep2.written, rep2.skipped, rep2.rejected) == (0, 5, [])
    assert (out / "alice" / "einstein.npz").stat().st_mtime_ns == before
    assert set(read_rejected(out)) == {"bob/blank.png", "bob/corrupt.jpg"}
    # an interrupted run resumes: a missing output is redone, the rest skipped
    (out / "bob" / "breakingbad.npz").unlink()
    rep3 = prepare_folder(photo_dir, out)
    assert (rep3.written, rep3.skipped) == (1, 4)
    rep4 = prepare_folder(photo_dir, out, retry_rejected=True)
    assert (rep4.written, rep4.skipped, len(rep4.rejected)) == (0, 3, 2)

    ds = PreparedFaceDataset(out)
    assert ds.persons == ["alice", "alice", "bob"]
    sample = ds[0]
    assert sample["image"].shape == (3, 224, 224) and sample["attention"].shape == (1, 224, 224)
    assert len(PreparedFaceDataset(out, persons=["bob"])) == 1


def test_main_prepare(photo_dir, tmp_path, capsys):
    out = tmp_path / "cli_out"
    assert main_prepare([str(photo_dir / "alice"), str(out), "--quiet", "--no-attention"]) == 0
    assert "prepared 2 new, 0 already done, 0 rejected" in capsys.readouterr().out
    assert "attention" not in read_item(out / "takeo.npz")
    # a missing source folder is a usage error: exit 2, as every CLI usage error
    assert main_prepare([str(tmp_path / "missing"), str(out), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error: not a folder")

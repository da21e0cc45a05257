"""Open report.html from file:// in headless Chromium: viewers mount, render and report errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facerecon.io import ReportEntry, save_png, write_glb, write_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome", "headless_shell")
CHROME = next((p for p in map(shutil.which, BROWSERS) if p), None)
pytestmark = pytest.mark.skipif(
    CHROME is None, reason="no chromium binary on PATH (install it with `make browser`)"
)
VIEWER_BG = np.array([34, 38, 46])  # the report's .viewer background, rgb(34, 38, 46)
VIEW_PX = 320  # .viewer is 320 x 320 CSS px


def dome(n: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 90 mm wide dome facing +z: vertices (n*n, 3) mm, triangles, colours (red->green in x)."""
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float64) / (n - 1) * 2 - 1
    z = 40.0 * np.sqrt(np.clip(1.2 - xs**2 - ys**2, 0, None))
    verts = np.stack([45 * xs, 45 * ys, z], axis=-1).reshape(-1, 3)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    tris = np.concatenate([np.stack([a, b, c], -1), np.stack([a, c, d], -1)]).reshape(-1, 3)
    t = (xs.reshape(-1) + 1) / 2
    cols = np.stack([1 - t, t, np.full_like(t, 0.2)], axis=1)
    return verts, tris, cols


def browser(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    args = [
        CHROME,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chrome-profile'}",
        # Software WebGL (SwiftShader through ANGLE); headless has no GPU.
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        "--window-size=1200,900",
        "--hide-scrollbars",
        "--virtual-time-budget=8000",
        *extra,
        url,
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=90, check=False)


def make_report(tmp_path: Path, broken_mesh: bool = False) -> Path:
    v, f, c = dome()
    entries = []
    for i in range(2):
        photo = save_png(tmp_path / f"photo{i}.png", np.full((16, 16, 3), 200, np.uint8))
        glb = write_glb(tmp_path / f"mesh{i}.glb", v, f, c)
        if broken_mesh and i == 1:
            glb.write_bytes(b"this is not a GLB file")
        entries.append(
            ReportEntry(
                f"face{i}.jpg", str(photo), str(photo), str(glb), "ok", meta={"model": "test"}
            )
        )
    entries.append(ReportEntry("bad.jpg", None, None, None, "failed", "no face found"))
    return write_report(tmp_path / "out", entries)


def viewer_tags(dom: str) -> list[str]:
    return re.findall(r'<div class="viewer"[^>]*>', dom)


def test_report_viewers_mount_without_errors(tmp_path):
    report = make_report(tmp_path)
    dom = browser(tmp_path, report.as_uri(), "--dump-dom").stdout
    assert 'data-js-errors="0"' in dom, dom[:2000]
    tags = viewer_tags(dom)
    assert len(tags) == 2
    for tag in tags:
        assert 'data-viewer-ready="1"' in tag and "data-viewer-error" not in tag, tag
        assert f'data-viewer-vertices="{24 * 24}"' in tag
    assert len(re.findall(r'<canvas data-engine="three\.js r\d+"', dom)) == 2
    assert "no face found" in dom


def test_report_screenshot_shows_coloured_mesh(tmp_path):
    report = make_report(tmp_path)
    shot = tmp_path / "shot.png"
    browser(tmp_path, report.as_uri(), f"--screenshot={shot}")
    img = np.asarray(Image.open(shot).convert("RGB")).astype(np.int64)
    is_bg = np.abs(img - VIEWER_BG).sum(axis=-1) <= 3
    assert is_bg.any(), "viewer background not found in the screenshot"
    rows, cols = np.nonzero(is_bg)
    top, left = rows.min(), cols[rows == rows.min()].min()
    view = img[top : top + VIEW_PX, left : left + VIEW_PX]
    covered = ~is_bg[top : top + VIEW_PX, left : left + VIEW_PX]
    # The dome fills a good part of the view and is neither blank nor uniform.
    assert 0.15 < covered.mean() < 0.9, covered.mean()
    assert view[covered].std(axis=0).max() > 20
    # Vertex colours are shown: strongly red pixels on the left, green on the right.
    mesh = view * covered[..., None]
    left_half, right_half = mesh[:, : VIEW_PX // 2], mesh[:, VIEW_PX // 2 :]
    assert (left_half[..., 0] - left_half[..., 1] > 60).sum() > 500
    assert (right_half[..., 1] - right_half[..., 0] > 60).sum() > 500


def test_report_marks_unreadable_mesh(tmp_path):
    report = make_report(tmp_path, broken_mesh=True)
    dom = browser(tmp_path, report.as_uri(), "--dump-dom").stdout
    good, bad = viewer_tags(dom)
    assert 'data-viewer-ready="1"' in good
    assert 'data-viewer-error="cannot read mesh' in bad and "data-viewer-ready" not in bad


def test_report_plays_an_animated_glb(tmp_path):
    """A video's GLB (morph target + node rotation) mounts, reports its clip and animates."""
    from facerecon.io import MeshAnimation

    v, f, c = dome()
    n = 25
    anim = MeshAnimation(
        times=np.arange(n) / 25.0,
        targets=np.tile([0.0, 0.0, 20.0], (1, len(v), 1)),
        weights=np.sin(np.linspace(0, np.pi, n))[:, None],
        rotations=np.stack(
            [
                np.zeros(n),
                np.sin(np.linspace(0, 0.5, n)),
                np.zeros(n),
                np.cos(np.linspace(0, 0.5, n)),
            ],
            1,
        ),
    )
    glb = write_glb(tmp_path / "anim.glb", v, f, c, animation=anim)
    report = write_report(tmp_path / "out", [ReportEntry("clip.mp4", None, None, str(glb), "ok")])
    dom = browser(tmp_path, report.as_uri(), "--dump-dom").stdout
    assert 'data-js-errors="0"' in dom, dom[:2000]
    (tag,) = viewer_tags(dom)
    assert 'data-viewer-ready="1"' in tag and "data-viewer-error" not in tag, tag
    duration = float(re.search(r'data-viewer-animated="([0-9.]+)"', tag).group(1))
    assert duration == pytest.approx((n - 1) / 25.0, abs=1e-3)


def test_report_shows_a_glb_texture(tmp_path):
    """A GLB whose colour is a baseColorTexture (blue left half, red right half, no vertex
    colours) is shown textured: the viewer marks it and the screenshot has the colours."""
    from facerecon.io import png_bytes

    v, f, _ = dome()
    uv = np.stack([(v[:, 0] + 45) / 90, (v[:, 1] + 45) / 90], axis=1)
    tex = np.zeros((64, 64, 3), np.uint8)
    tex[:, :32] = (30, 60, 230)
    tex[:, 32:] = (230, 40, 30)
    glb = write_glb(tmp_path / "tex.glb", v, f, uv=uv, texture=png_bytes(tex))
    report = write_report(tmp_path / "out", [ReportEntry("face.jpg", None, None, str(glb), "ok")])
    dom = browser(tmp_path, report.as_uri(), "--dump-dom").stdout
    assert 'data-js-errors="0"' in dom, dom[:2000]
    (tag,) = viewer_tags(dom)
    assert 'data-viewer-ready="1"' in tag and 'data-viewer-textured="1"' in tag, tag
    shot = tmp_path / "shot.png"
    browser(tmp_path, report.as_uri(), f"--screenshot={shot}")
    img = np.asarray(Image.open(shot).convert("RGB")).astype(np.int64)
    is_bg = np.abs(img - VIEWER_BG).sum(axis=-1) <= 3
    rows, cols = np.nonzero(is_bg)
    top, left = rows.min(), cols[rows == rows.min()].min()
    view = img[top : top + VIEW_PX, left : left + VIEW_PX]
    mesh = view * (~is_bg[top : top + VIEW_PX, left : left + VIEW_PX])[..., None]
    left_half, right_half = mesh[:, : VIEW_PX // 2], mesh[:, VIEW_PX // 2 :]
    assert (left_half[..., 2] - left_half[..., 0] > 60).sum() > 500
    assert (right_half[..., 0] - right_half[..., 2] > 60).sum() > 500

"""The command line end to end: two photos, one of them bad; overwrite protection; info."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facerecon.cli import main


def _run(args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "facerecon.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, faces_68pt):
    inputs = tmp_path_factory.mktemp("inputs")
    shutil.copy(faces_68pt / "takeo.ppm", inputs / "takeo.ppm")
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    out = tmp_path_factory.mktemp("out")
    proc = _run(["reconstruct", str(inputs), "--out", str(out), "--fast", "--quiet"])
    return inputs, out, proc


def test_batch_continues_past_bad_file(cli_run):
    _, out, proc = cli_run
    assert proc.returncode == 1, proc.stderr  # some input failed
    assert "broken.jpg" in proc.stderr
    for suffix in (".obj", ".glb", ".npz", "_overlay.png", "_landmarks.json"):
        assert (out / f"takeo{suffix}").stat().st_size > 0, suffix
    assert (out / "report.html").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["written"]) == 1 and len(summary["failed"]) == 1


def test_outputs_are_consistent(cli_run):
    from facerecon.io import load_coefficients, read_obj

    _, out, _ = cli_run
    arrays, meta = load_coefficients(out / "takeo.npz")
    assert meta["model"] == "bfm-lite"
    assert arrays["coeffs"].shape[-1] == sum(meta["layout"])
    mesh = read_obj(out / "takeo.obj")
    vertices = mesh.vertices
    assert vertices.shape[1] == 3 and np.isfinite(vertices).all()
    lms = json.loads((out / "takeo_landmarks.json").read_text())
    # The fitted model's landmarks land near the detected ones in the original photo.
    assert lms["mean_error_px"] < 6.0


def test_refuses_to_overwrite(cli_run):
    inputs, out, _ = cli_run
    proc = _run(["reconstruct", str(inputs / "takeo.ppm"), "--out", str(out), "--fast", "--quiet"])
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "--overwrite" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_missing_input_is_one_line_error(tmp_path):
    proc = _run(["reconstruct", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o")])
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_info_runs(capsys):
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "torch" in text and "cache" in text


def test_textured_obj_written(cli_run):
    from PIL import Image

    _, out, _ = cli_run
    obj = (out / "takeo.obj").read_text()
    assert "mtllib takeo.mtl" in obj and "\nvt " in obj
    texture = np.asarray(Image.open(out / "takeo_texture.png"))
    assert texture.shape[:2] == (1024, 1024) and texture.std() > 5


def test_cli_report_opens_in_chromium(cli_run, tmp_path):
    """The report of a real run loads from file:// with its 3D viewer and no JS errors."""
    import re

    from test_report_browser import CHROME, browser

    if CHROME is None:
        pytest.skip("no chromium binary on PATH (install it with `make browser`)")
    _, out, _ = cli_run
    dom = browser(tmp_path, (out / "report.html").as_uri(), "--dump-dom").stdout
    assert 'data-js-errors="0"' in dom, dom[:2000]
    tags = re.findall(r'<div class="viewer"[^>]*>', dom)
    assert len(tags) == 1 and 'data-viewer-ready="1"' in tags[0], tags
    assert "broken.jpg" in dom  # the failed input is listed with its message


def test_evaluate_cli_on_reconstruction(cli_run, tmp_path):
    """`facerecon evaluate` pairs meshes by name: a mesh against itself scores 0 mm."""
    _, out, _ = cli_run
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    shutil.copy(out / "takeo.obj", pred / "takeo.obj")
    shutil.copy(out / "takeo.obj", gt / "takeo.obj")
    proc = _run(
        ["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(tmp_path / "r.json")]
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    (item,) = result["items"]
    assert item["name"] == "takeo" and item["status"] == "ok"
    assert item["metrics"]["rmse_plane"] < 1e-3
    assert item["metrics"]["n_points"] > 1000


def test_all_faces_writes_one_set_per_face(tmp_path, faces_68pt):
    """breakingbad.jpg shows several people: --all-faces reconstructs each, largest first."""
    out = tmp_path / "out"
    photo = str(faces_68pt / "breakingbad.jpg")
    args = ["reconstruct", photo, "--out", str(out), "--fast", "--quiet", "--all-faces"]
    proc = _run([*args, "--no-report"])
    assert proc.returncode == 0, proc.stderr
    meshes = sorted(out.glob("breakingbad_face*.glb"))
    assert len(meshes) >= 2, sorted(p.name for p in out.iterdir())
    summary = json.loads((out / "summary.json").read_text())
    assert [w["name"] for w in summary["written"]] == [m.stem for m in meshes]
    for w in summary["written"]:
        detected = np.array(json.loads(Path(w["paths"]["landmarks"]).read_text())["detected"])
        iod = np.linalg.norm(detected[36] - detected[45])
        # fitted-model landmarks vs the detector's, relative to the face's size
        assert w["landmark_error_px"] / iod < 0.12, (w["name"], w["landmark_error_px"], iod)


def test_rnet_and_auto_methods(tmp_path, faces_68pt):
    """--method rnet runs the network alone; auto refines its estimate by fitting. An untrained
    R-Net (zero head) predicts the mean face at zero pose; refinement must move towards the
    photo's landmarks."""
    import torch

    from facerecon.io import load_coefficients
    from facerecon.morphable import load_face_model
    from facerecon.nets.rnet import RNet, export_weights

    torch.manual_seed(0)
    layout = load_face_model("bfm-lite").layout
    weights = export_weights(
        RNet(layout, backbone="mobilenet_v2", width_mult=0.5), tmp_path / "r.pt"
    )
    photo = str(faces_68pt / "takeo.ppm")
    errors = {}
    for method in ("rnet", "auto"):
        out = tmp_path / method
        args = ["reconstruct", photo, "--out", str(out), "--method", method]
        proc = _run([*args, "--weights", str(weights), "--quiet", "--no-report", "--fast"])
        assert proc.returncode == 0, proc.stderr
        arrays, meta = load_coefficients(out / "takeo.npz")
        assert meta["method"] == method
        errors[method] = json.loads((out / "takeo_landmarks.json").read_text())["mean_error_px"]
        if method == "rnet":
            assert np.allclose(arrays["coeffs"], 0.0)
    # takeo is small and frontal, so the aligned mean face is already close (~2.7 px here);
    # 30 refinement steps cut that by ~30 %.
    assert errors["auto"] < 0.8 * errors["rnet"], errors


def test_rnet_without_weights_is_one_line_error(tmp_path, faces_68pt):
    photo = str(faces_68pt / "takeo.ppm")
    proc = _run(["reconstruct", photo, "--out", str(tmp_path), "--method", "rnet"])
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "--weights" in proc.stderr


def test_set_with_cnet_shares_identity_and_reports_confidence(tmp_path, faces_68pt):
    """--set --cnet: one aggregated identity for the album, per-photo confidence in the summary
    and report. A zero-initialised C-Net gives every coefficient confidence 0.5."""
    import torch

    from facerecon.io import load_coefficients
    from facerecon.morphable import load_face_model
    from facerecon.nets.cnet import CNet, export_cnet_weights
    from facerecon.nets.rnet import RNet, export_weights

    torch.manual_seed(0)
    layout = load_face_model("bfm-lite").layout
    rnet = RNet(layout, backbone="mobilenet_v2", width_mult=0.5)
    with torch.no_grad():  # a non-zero head, so identities differ before aggregation
        for p in rnet.parameters():
            p.add_(0.01 * torch.randn_like(p))
    weights = export_weights(rnet, tmp_path / "r.pt")
    cnet = export_cnet_weights(CNet.for_rnet(rnet), tmp_path / "c.pt")
    out = tmp_path / "out"
    photos = [str(faces_68pt / "takeo.ppm"), str(faces_68pt / "einstein.jpg")]
    args = ["reconstruct", *photos, "--set", "--method", "rnet", "--weights", str(weights)]
    proc = _run([*args, "--cnet", str(cnet), "--out", str(out), "--quiet"])
    assert proc.returncode == 0, proc.stderr
    ids = [load_coefficients(out / f"{n}.npz")[0]["id_coeff"] for n in ("takeo", "einstein")]
    assert np.abs(ids[0]).max() > 0 and np.allclose(ids[0], ids[1])
    summary = json.loads((out / "summary.json").read_text())
    for item in summary["written"]:
        assert item["confidence"] == pytest.approx(0.5 * layout.n_id, rel=1e-3)
    assert "confidence" in (out / "report.html").read_text()

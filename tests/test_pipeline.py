"""facerecon.pipeline pieces that need no fitting: stage errors, output pre-checks, names."""

from __future__ import annotations

import pytest

from facerecon.errors import FaceReconError
from facerecon.pipeline import claim_name, existing_outputs, prepare_image, run_stage


class _BrokenDetector:
    def detect(self, photo, all_faces=False):
        raise RuntimeError("detector exploded\nwith a traceback-like second line")


def test_prepare_image_names_the_failed_stage(faces_68pt):
    with pytest.raises(FaceReconError) as info:
        prepare_image(faces_68pt / "takeo.ppm", "takeo", _BrokenDetector(), all_faces=False)
    assert str(info.value) == "face detection failed: RuntimeError: detector exploded"


def test_run_stage_passes_user_errors_through():
    def user_error():
        raise FaceReconError("x.jpg: no face found")

    with pytest.raises(FaceReconError, match=r"^x.jpg: no face found$"):
        run_stage("fitting", user_error)
    assert run_stage("fitting", lambda a, b=0: a + b, 2, b=3) == 5


def test_existing_outputs_cover_every_file_a_run_writes(tmp_path):
    names = ["a", "b"]
    assert existing_outputs(tmp_path / "missing", names, True, True) == []
    for f in ("b_texture.png", "a_face1_overlay.png", "a_face12.glb", "summary.json",
              "report.html", "a_faces.glb", "c.obj", "a_face1.txt"):  # fmt: skip
        (tmp_path / f).write_text("x")
    found = [p.name for p in existing_outputs(tmp_path, names, True, True)]
    assert found == ["a_face12.glb", "a_face1_overlay.png", "b_texture.png", "summary.json",
                     "report.html"]  # fmt: skip
    # one face per photo: NAME_faceK files are not ours to write; no report: not report.html
    found = [p.name for p in existing_outputs(tmp_path, names, False, False)]
    assert found == ["b_texture.png", "summary.json"]


def test_claim_name_never_reuses_a_name():
    taken = {"a", "a_face0"}
    assert [claim_name(n, taken) for n in ("a_face0", "a_face1", "a_face0")] == [
        "a_face0_2",
        "a_face1",
        "a_face0_3",
    ]


def test_defaults_pick_the_shipped_weights(tmp_path, monkeypatch):
    """No --method: auto when an R-Net ships for the model (fit otherwise); --set adds the
    shipped C-Net only on top of the shipped R-Net; --no-shipped-weights turns both off."""
    from pathlib import Path

    import facerecon.nets.shipped as shipped
    from facerecon.pipeline import ReconstructOptions, resolve_options

    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path)
    assert resolve_options(ReconstructOptions()).method == "fit"  # nothing ships here
    (tmp_path / "rnet_bfm-lite.pt").write_bytes(b"r")
    (tmp_path / "cnet_bfm-lite.pt").write_bytes(b"c")
    r = resolve_options(ReconstructOptions())
    assert (r.method, r.weights, r.cnet) == ("auto", tmp_path / "rnet_bfm-lite.pt", None)
    r = resolve_options(ReconstructOptions(as_set=True))
    assert r.cnet == tmp_path / "cnet_bfm-lite.pt"
    r = resolve_options(ReconstructOptions(as_set=True, method="fit"))
    assert (r.method, r.cnet) == ("fit", None)
    mine = Path("my_rnet.pt")
    r = resolve_options(ReconstructOptions(as_set=True, weights=mine))
    assert (r.method, r.weights, r.cnet) == ("auto", mine, None)  # never pair with another net
    r = resolve_options(ReconstructOptions(as_set=True, shipped=False))
    assert (r.method, r.weights, r.cnet) == ("fit", None, None)
    r = resolve_options(ReconstructOptions(model="ict"))
    assert (r.method, r.weights) == ("fit", None)  # shipped weights are per face model
    assert shipped.shipped_weights("rnet", str(tmp_path / "model.npz")) is None

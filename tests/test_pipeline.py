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

"""The public Python API: ``facerecon.reconstruct`` and the README's example."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import facerecon
from facerecon.errors import FaceReconError

README = Path(__file__).resolve().parents[1] / "README.md"
ASTRONAUT = Path(facerecon.__file__).parent / "assets" / "astronaut.jpg"


def test_readme_example_runs(tmp_path, monkeypatch):
    """The README's Python API block, run on the bundled photo (paths replaced)."""
    text = README.read_text()
    section = text[text.index("## Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    for name in ("photo.jpg", "a.jpg", "b.jpg"):
        shutil.copy(ASTRONAUT, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    code = code.replace('method="fit"', 'method="rnet"')  # the example's shape, quickly
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    face, album = scope["face"], scope["album"]
    assert isinstance(face, facerecon.Reconstruction) and face.source == Path("photo.jpg")
    assert face.vertices.shape == face.neutral_vertices.shape == face.albedo.shape
    assert face.lm68.shape == (68, 2) and face.landmark_error_px < 20.0
    lines = (tmp_path / "face_neutral.obj").read_text().splitlines()
    assert sum(ln.startswith("v ") for ln in lines) == len(face.vertices)
    assert [f.name for f in album] == ["a", "b"]
    np.testing.assert_array_equal(album[0].parts["id_coeff"], album[1].parts["id_coeff"])
    assert album[0].confidence is not None  # the shipped C-Net weighs the album


def test_arrays_names_and_errors(faces_68pt):
    from facerecon.detect import load_image

    photo = load_image(faces_68pt / "takeo.ppm")
    out = facerecon.reconstruct([photo, faces_68pt / "takeo.ppm"], method="rnet")
    assert [(f.name, f.source) for f in out] == [
        ("image0", None),
        ("takeo", faces_68pt / "takeo.ppm"),
    ]
    np.testing.assert_allclose(out[0].coeffs, out[1].coeffs, atol=1e-6)
    # the neutral mesh is the identity with expression 0, the posed one adds the expression
    assert not np.allclose(out[0].vertices, out[0].neutral_vertices)
    with pytest.raises(FaceReconError, match="image0: no face found"):
        facerecon.reconstruct(np.zeros((64, 64, 3), np.uint8), method="rnet")
    with pytest.raises(FaceReconError, match=r"image file not found: missing\.jpg"):
        facerecon.reconstruct("missing.jpg", method="rnet")

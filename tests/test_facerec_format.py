"""dlib serialization reader: primitives, the real descriptor file, and malformed files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facerecon.errors import ModelFileError
from facerecon.nets.dlib_format import (
    AddPrevSpec,
    ConvSpec,
    DlibReader,
    FcSpec,
    PoolSpec,
    TagSpec,
    parse_dlib_net,
    read_dlib_net,
)
from facerecon.nets.facerec import convert_dlib_net, default_facerec_path


@pytest.fixture(scope="module")
def model_path() -> Path:
    return default_facerec_path()


@pytest.fixture(scope="module")
def spec(model_path: Path):
    return read_dlib_net(model_path)


def test_integer_encoding() -> None:
    r = DlibReader(b"\x01\x05\x81\x05\x02\x00\x01\x00\x84\x00\x00\x00\x80")
    assert [r.read_int() for _ in range(4)] == [5, -5, 256, 0]
    assert r.read_int() == -(2**31)
    assert r.at_end()


def test_float_string_bool_encoding() -> None:
    # 0.04 as dlib writes it: mantissa 0xa3d70a, exponent -28; then 1.0 = 16 * 2**-4
    r = DlibReader(b"\x03\x0a\xd7\xa3\x81\x1c\x01\x10\x81\x04\x01\x03abc10\x01\x00\x02\x00\x7d")
    assert r.read_float() == pytest.approx(0.04, rel=1e-7)
    assert r.read_float() == 1.0
    assert r.read_string() == "abc"
    assert r.read_bool() is True and r.read_bool() is False
    assert np.isinf(r.read_float())  # exponent 32000 = +inf


@pytest.mark.parametrize("data", [b"\x02\x01", b"\x40\x01", b"\x09" + bytes(9), b""])
def test_bad_integers_raise(data: bytes) -> None:
    with pytest.raises(ModelFileError):
        DlibReader(data).read_int()


def test_bad_string_bool_tensor_raise() -> None:
    with pytest.raises(ModelFileError, match="truncated"):
        DlibReader(b"\x01\x05ab").read_string()
    with pytest.raises(ModelFileError, match="bool"):
        DlibReader(b"x").read_bool()
    with pytest.raises(ModelFileError, match="tensor version"):
        DlibReader(b"\x01\x03").read_tensor()
    with pytest.raises(ModelFileError, match="truncated"):  # 2 floats announced, 1 present
        DlibReader(b"\x01\x02\x01\x02\x01\x01\x01\x01\x01\x01" + bytes(4)).read_tensor()


def test_real_file_layers(spec) -> None:
    assert spec.loss.distance_threshold == pytest.approx(0.6)
    assert spec.loss.margin == pytest.approx(0.04)
    assert spec.input.size == (150, 150)
    np.testing.assert_allclose(spec.input.mean_rgb, (122.782, 117.001, 104.298), atol=1e-4)
    convs = [layer for layer in spec.layers if isinstance(layer, ConvSpec)]
    assert len(convs) == 29
    assert convs[0].weight.shape == (32, 3, 7, 7) and convs[0].stride == (2, 2)
    assert convs[0].padding == (0, 0)
    strided = [c for c in convs if c.stride == (2, 2)]
    assert [c.weight.shape[:2] for c in strided] == [
        (32, 3),
        (64, 32),
        (128, 64),
        (256, 128),
        (256, 256),
    ]
    assert all(c.padding == (0, 0) for c in strided)
    assert all(c.padding == (1, 1) for c in convs if c.stride == (1, 1))
    pools = [layer for layer in spec.layers if isinstance(layer, PoolSpec)]
    assert [(p.kind, p.window, p.stride) for p in pools] == [("max", (3, 3), (2, 2))] + [
        ("avg", (2, 2), (2, 2))
    ] * 4 + [("avg", (0, 0), (1, 1))]
    assert sum(isinstance(layer, AddPrevSpec) for layer in spec.layers) == 14
    assert (
        sum(isinstance(layer, TagSpec) for layer in spec.layers) == 22
    )  # one per block + tag2/skip1 in the 4 downsampling blocks
    fc = spec.layers[-1]
    assert isinstance(fc, FcSpec) and fc.weight.shape == (256, 128) and fc.bias is None
    assert all(np.isfinite(c.weight).all() for c in convs)


def test_convert_arch(spec) -> None:
    arch, state = convert_dlib_net(spec)
    assert len(arch["blocks"]) == 14
    assert [b["shortcut_pool"] is not None for b in arch["blocks"]].count(True) == 4
    assert state["stem.weight"].shape == (32, 3, 7, 7)
    assert state["fc.weight"].shape == (128, 256)
    n_params = sum(v.numel() for v in state.values())
    assert 5_500_000 < n_params < 5_700_000


def test_convert_rejects_wrong_sequence(spec) -> None:
    spec2 = type(spec)(loss=spec.loss, input=spec.input, layers=spec.layers[4:])
    with pytest.raises(ModelFileError, match="unexpected dlib layer sequence"):
        convert_dlib_net(spec2)


def test_missing_truncated_wrong_files(tmp_path: Path, model_path: Path) -> None:
    with pytest.raises(ModelFileError, match="cannot read"):
        read_dlib_net(tmp_path / "nope.dat")
    data = model_path.read_bytes()
    for cut in (3, 300, 1_000_000, len(data) - 5):
        with pytest.raises(ModelFileError) as info:
            parse_dlib_net(data[:cut])
        assert "\n" not in str(info.value)
    with pytest.raises(ModelFileError, match="trailing"):
        parse_dlib_net(data + b"\x00")
    wrong = model_path.parent / "shape_predictor_5_face_landmarks.dat"
    with pytest.raises(ModelFileError):
        read_dlib_net(wrong)
    (tmp_path / "text.dat").write_text("hello world")
    with pytest.raises(ModelFileError):
        read_dlib_net(tmp_path / "text.dat")

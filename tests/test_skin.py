"""Skin classifier: held-out accuracy, attention rule, numpy/torch agreement, real faces."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facerecon.errors import ImageError, ModelFileError
from facerecon.skin import (
    SkinModel,
    is_grayscale,
    landmark_face_region,
    load_skin_model,
    skin_attention,
    skin_probability,
)
from facerecon.skin.gmm import fit_gmm, gmm_log_prob
from facerecon.skin.model import DEFAULT_MODEL_PATH

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "src" / "facerecon" / "assets" / "astronaut.jpg"


def _fit_script():
    spec = importlib.util.spec_from_file_location("fit_skin", REPO / "scripts" / "fit_skin.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def uci(shared_data: Path):
    fs = _fit_script()
    rgb, is_skin = fs.load_rows(shared_data / "skin" / "Skin_NonSkin.txt")
    return fs, rgb, is_skin, fs.stratified_split(is_skin, fs.SEED, fs.TEST_FRACTION)


def _photo(photos_68pt: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The photo and its landmark face region (from the hand-placed 68 points)."""
    image, lm = photos_68pt[name]
    return image, landmark_face_region(image.shape[0], image.shape[1], lm)


# ---------------------------------------------------------------- held-out data
def test_heldout_accuracy(uci):
    """Shipped model on the 20 % held-out rows (49,012) of the fixed stratified split.

    Measured: accuracy 99.50 %, precision 97.93 %, recall 99.68 % (prior 0.8). Bound 99.0 %:
    the majority class alone gives 79.2 %, and reading the file as RGB instead of BGR
    (checked below) falls far under it, so the bound separates a working model from a broken
    one while leaving ~0.5 pp for refits on other BLAS builds.
    """
    fs, rgb, is_skin, test = uci
    model = load_skin_model()
    m = fs.metrics(model, rgb[test], is_skin[test])
    assert m["accuracy"] > 0.990
    assert m["precision"] > 0.97 and m["recall"] > 0.99
    assert 1.0 - is_skin[test].mean() < 0.80  # majority baseline
    swapped = fs.metrics(model, rgb[test][:, ::-1], is_skin[test])
    assert swapped["accuracy"] < 0.90
    # the prior trades precision for recall on the same mixtures
    m5 = fs.metrics(model.with_prior(0.5), rgb[test], is_skin[test])
    assert m5["precision"] > m["precision"] and m5["recall"] < m["recall"]


def test_fit_script_reproduces_shipped_model(uci):
    fs, rgb, is_skin, test = uci
    model, _ = fs.fit_model(rgb[~test], is_skin[~test], fs.SPACE, fs.COMPONENTS, fs.PRIOR)
    shipped = load_skin_model()
    assert (shipped.space, shipped.prior) == (model.space, model.prior) == ("ycbcr", 0.8)
    for a, b in ((model.skin, shipped.skin), (model.nonskin, shipped.nonskin)):
        assert a.weights.shape == (4,) and a.covariances.shape == (4, 3, 3)
        np.testing.assert_allclose(a.weights, b.weights, rtol=1e-6)
        np.testing.assert_allclose(a.means, b.means, rtol=1e-6)
        np.testing.assert_allclose(a.covariances, b.covariances, rtol=1e-5)


# ---------------------------------------------------------------- API behaviour
def test_attention_rule_exact():
    p = np.array([0.0, 0.2, 0.5, 0.5000001, 0.9, 1.0], dtype=np.float32)
    expect = np.array([0.0, 0.2, 0.5, 1.0, 1.0, 1.0], dtype=np.float32)
    a = skin_attention(p)
    assert a.dtype == np.float32 and np.array_equal(a, expect)
    t = torch.tensor(p, dtype=torch.float64).reshape(1, 1, 2, 3)
    at = skin_attention(t)
    assert at.dtype == torch.float64 and at.shape == (1, 1, 2, 3)
    assert torch.equal(at.flatten(), torch.tensor(expect, dtype=torch.float64))


def test_known_colours():
    colours = np.array(
        [[[204, 147, 114], [0, 0, 255], [0, 255, 0], [30, 90, 200], [255, 255, 255]]], np.uint8
    )  # mean UCI skin colour (RGB), blue, green, sky blue, white
    p = skin_probability(colours)
    assert p.shape == (1, 5) and p.dtype == np.float32
    assert p[0, 0] > 0.99
    assert (p[0, 1:] < 0.01).all()


def test_numpy_and_torch_agree():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(37, 29, 3), dtype=np.uint8)
    face = np.asarray(Image.open(ASTRONAUT).convert("RGB"))[60:200, 150:290]
    for image in (img, face):
        p_np = skin_probability(image)
        x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None] / 255.0
        p32 = skin_probability(x)
        p64 = skin_probability(torch.from_numpy(image.copy()).double().permute(2, 0, 1)[None] / 255)
        assert p32.shape == (1, 1, *image.shape[:2]) and p32.dtype == torch.float32
        assert p64.dtype == torch.float64
        assert np.abs(p32[0, 0].numpy() - p_np).max() < 1e-4
        assert np.abs(p64[0, 0].numpy() - p_np).max() < 1e-6  # np output is float32
        # numpy float input in 0..1 is the same as uint8
        assert np.abs(skin_probability(image / 255.0) - p_np).max() < 1e-6
    # a batch is per-image, half precision comes back in half
    batch = torch.stack([torch.from_numpy(face.copy()).permute(2, 0, 1) / 255.0] * 2)
    pb = skin_probability(batch.half())
    assert pb.dtype == torch.float16 and pb.shape == (2, 1, 140, 140)
    assert torch.equal(pb[0], pb[1])


def test_bad_inputs_raise_one_line_errors(tmp_path: Path):
    with pytest.raises(ImageError):
        skin_probability(np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageError):
        skin_probability(torch.zeros(3, 4, 4))
    with pytest.raises(ImageError):
        skin_probability(np.zeros((4, 4, 3), np.int32))
    with pytest.raises(ImageError):
        skin_probability(np.zeros((4, 4, 3), np.uint8), gray="maybe")
    bad = tmp_path / "bad.npz"
    np.savez(bad, space=np.array("ycbcr"))
    with pytest.raises(ModelFileError, match="cannot read skin model") as e:
        SkinModel.load(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(ModelFileError):
        SkinModel.load(tmp_path / "missing.npz")


def test_model_round_trip(tmp_path: Path):
    model = load_skin_model()
    model.with_prior(0.3).save(tmp_path / "m.npz")
    again = SkinModel.load(tmp_path / "m.npz")
    assert again.prior == 0.3 and again.space == model.space
    np.testing.assert_array_equal(again.skin.covariances, model.skin.covariances)
    assert DEFAULT_MODEL_PATH.stat().st_size < 20_000


# ---------------------------------------------------------------- EM
def test_em_recovers_two_gaussians_and_weights_equal_repeats():
    rng = np.random.default_rng(1)
    cov_b = np.array([[4.0, 1.5], [1.5, 2.0]])
    a = rng.normal([0.0, 0.0], 1.0, size=(3000, 2))
    b = rng.multivariate_normal([10.0, 5.0], cov_b, size=1000)
    x = np.concatenate([a, b])
    g, _, _ = fit_gmm(x, 2, seed=0, reg_covar=1e-6)
    j = int(np.argmax(g.means[:, 0]))
    np.testing.assert_allclose(g.weights[j], 0.25, atol=0.02)
    np.testing.assert_allclose(g.means[j], [10.0, 5.0], atol=0.2)
    np.testing.assert_allclose(g.covariances[j], cov_b, atol=0.35)
    np.testing.assert_allclose(g.covariances[1 - j], np.eye(2), atol=0.1)
    # log-density integrates to ~1 over a grid (a density, not just a score)
    gx, gy = np.meshgrid(np.linspace(-8, 20, 281), np.linspace(-8, 14, 221))
    dens = np.exp(gmm_log_prob(np.stack([gx.ravel(), gy.ravel()], 1), g))
    assert dens.sum() * 0.1 * 0.1 == pytest.approx(1.0, abs=0.01)
    # integer weights == repeating the rows
    xi = np.round(x[:400])
    u, c = np.unique(xi, axis=0, return_counts=True)
    _, llw, _ = fit_gmm(u, 2, c, seed=0, max_iter=5, tol=0.0)
    _, llr, _ = fit_gmm(np.repeat(u, c, axis=0), 2, seed=0, max_iter=5, tol=0.0)
    assert llw == pytest.approx(llr, rel=1e-9)


# ---------------------------------------------------------------- real photos
def test_face_region_geometry(photos_68pt):
    image, region = _photo(photos_68pt, "breakingbad")
    lm = photos_68pt["breakingbad"][1]
    assert region.shape == image.shape[:2]

    def r(p: np.ndarray) -> bool:
        return bool(region[round(p[1]), round(p[0])])

    assert r(lm[30]) and r(lm[33])  # nose tip, under the nose
    assert not r(lm[36:42].mean(0)) and not r(lm[42:48].mean(0))  # eye centres
    assert not r(lm[[51, 57]].mean(0))  # mouth centre
    assert not r(lm[19])  # brow
    hull_w = lm[:, 0].max() - lm[:, 0].min()
    hull_h = lm[:, 1].max() - lm[:, 1].min()
    assert 0.4 * hull_w * hull_h < region.sum() < hull_w * hull_h


def test_face_skin_fraction_colour_photos(photos_68pt):
    """Fraction of the landmark face region with P > 0.5.

    breakingbad (the only colour photo in faces_68pt) measures 0.664 with the shipped prior
    0.8 (0.625 with prior 0.5): glasses, moustache and the teal-graded shadow side of the face
    are non-skin colours, so about a third of the region is rightly or wrongly rejected; bound
    0.6. The astronaut photo shipped with the package (landmarks from dlib's 68-point predictor)
    measures 0.839; bound 0.75.
    """
    image, region = _photo(photos_68pt, "breakingbad")
    assert not is_grayscale(image)
    frac = float(np.mean(skin_probability(image)[region] > 0.5))
    assert frac > 0.60
    # the same photo's background (outside every face, teal window and clothes) is mostly not
    # skin: the whole-image fraction is far lower than the face's
    assert float(np.mean(skin_probability(image) > 0.5)) < 0.2

    dlib = pytest.importorskip("dlib")
    frm = pytest.importorskip("face_recognition_models")
    astro = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
    det = dlib.get_frontal_face_detector()(astro, 0)
    assert len(det) >= 1
    box = max(det, key=lambda b: b.area())
    shape = dlib.shape_predictor(frm.pose_predictor_model_location())(astro, box)
    lm = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    region = landmark_face_region(astro.shape[0], astro.shape[1], lm)
    assert float(np.mean(skin_probability(astro)[region] > 0.5)) > 0.75


def test_gray_photos(photos_68pt):
    """einstein and takeo are grayscale (R = G = B). Colour says nothing there: by default P = 1
    (attention falls back to the render mask); forcing the model rates gray as non-skin."""
    for name in ("einstein", "takeo"):
        image, region = _photo(photos_68pt, name)
        assert is_grayscale(image)
        assert np.array_equal(skin_probability(image), np.ones(image.shape[:2], np.float32))
        forced = skin_probability(image, gray="model")
        assert float(np.mean(forced[region] > 0.5)) < 0.01
        x = torch.from_numpy(image[:64, :64].copy()).permute(2, 0, 1)[None] / 255.0
        colour = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        both = skin_probability(torch.cat([x, colour]))
        assert torch.equal(both[0], torch.ones(1, 64, 64))
        assert both[1].min() < 0.5
        assert is_grayscale(torch.cat([x, colour])).tolist() == [True, False]

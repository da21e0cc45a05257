"""dlib face descriptor in torch: parity with dlib, alignment, distances, gradients, cache."""

from __future__ import annotations

from pathlib import Path

import cv2
import dlib
import numpy as np
import pytest
import torch

from facerecon.detect import align
from facerecon.nets.facerec import (
    CHIP_LANDMARKS,
    DLIB_MEAN_FACE,
    default_facerec_path,
    embed,
    face_chip_transform,
    facerec_crop,
    load_facerec,
)

MODELS = default_facerec_path().parent


@pytest.fixture(scope="module")
def net():
    return load_facerec()


@pytest.fixture(scope="module")
def dlib_models():
    rec = dlib.face_recognition_model_v1(str(MODELS / "dlib_face_recognition_resnet_model_v1.dat"))
    sp = dlib.shape_predictor(str(MODELS / "shape_predictor_68_face_landmarks.dat"))
    return rec, sp


@pytest.fixture(scope="module")
def faces(photos_68pt, dlib_models):
    """(name, image uint8 RGB, dlib box, dlib 68-point shape) for every detected face."""
    _, sp = dlib_models
    det = dlib.get_frontal_face_detector()
    out = []
    for name, upsample in (("einstein", 0), ("breakingbad", 1), ("takeo", 0)):
        img = np.array(photos_68pt[name][0])  # writable copy, as torch.from_numpy wants
        for box in det(img, upsample):
            out.append((name, img, box, sp(img, box)))
    assert len(out) == 5  # 1 + 3 people + 1
    return out


def _lm(shape) -> torch.Tensor:
    return torch.tensor([[p.x, p.y] for p in shape.parts()], dtype=torch.float64)[None]


def _img(img: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].to(dtype) / 255


def _ours(net, img, shape) -> np.ndarray:
    with torch.no_grad():
        return embed(net, _img(img), _lm(shape))[0].numpy().astype(np.float64)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_same_chip_parity(net, dlib_models, faces) -> None:
    """(a) the very same dlib chip into both networks."""
    rec, _ = dlib_models
    chips = [dlib.get_face_chip(img, shape, 150, 0.25) for _, img, _, shape in faces]
    theirs = np.array([np.array(rec.compute_face_descriptor(c)) for c in chips])
    with torch.no_grad():
        ours = net(torch.cat([_img(c) for c in chips])).numpy()
    for o, t in zip(ours, theirs, strict=True):
        assert _cos(o, t) > 0.99999
        assert np.abs(o - t).max() < 1e-5
    assert net(torch.zeros(1, 3, 150, 150)).shape == (1, 128)


def test_end_to_end_parity(net, dlib_models, faces) -> None:
    """(b) our differentiable crop on the photo vs dlib's compute_face_descriptor on the photo."""
    rec, _ = dlib_models
    for _, img, _, shape in faces:
        t = np.array(rec.compute_face_descriptor(img, shape))
        o = _ours(net, img, shape)
        assert _cos(o, t) > 0.9995
        assert np.linalg.norm(o - t) < 0.02


def test_aligned_crop_parity(net, dlib_models, faces) -> None:
    """(c) what the perceptual loss sees: embed() of the uint8 224 crop from detect.align (with
    its crop landmarks) vs dlib's compute_face_descriptor on the original photo.

    Measured cosines: einstein 0.9995, breakingbad 0.9979 / 0.9995 / 0.9988, takeo 0.9999
    (distances 0.02-0.10; dlib's same-person threshold is 0.6). Lower than (b) because the photo
    is resampled twice (align's bilinear / area warp to uint8, then the chip crop).
    """
    rec, _ = dlib_models
    cosines = []
    for _, img, _, shape in faces:
        t = np.array(rec.compute_face_descriptor(img, shape))
        a = align(img, _lm(shape)[0].numpy(), size=224)
        assert a.image.shape == (224, 224, 3)
        with torch.no_grad():
            o = embed(net, _img(a.image), torch.from_numpy(a.lm68)[None])[0].numpy()
        cosines.append(_cos(o.astype(np.float64), t))
        assert np.linalg.norm(o - t) < 0.15
    assert min(cosines) > 0.995
    assert np.mean(cosines) > 0.998


def test_crop_matches_dlib_chip(faces) -> None:
    """Pixel agreement with dlib.get_face_chip (dlib truncates to uint8: at most ~1 per pass)."""
    for _, img, box, shape in faces:
        chip = dlib.get_face_chip(img, shape, 150, 0.25).astype(np.float64)
        with torch.no_grad():
            ours = facerec_crop(_img(img, torch.float64), _lm(shape))[0].permute(1, 2, 0).numpy()
        diff = ours * 255 - chip
        pyramid = box.width() > 200  # these faces take dlib's pyramid path (two truncations)
        assert 0.0 < diff.mean() < (1.0 if pyramid else 0.5) + 1e-3
        assert np.abs(diff).max() < (2.0 if pyramid else 1.0) + 1e-3
        if not pyramid:  # one bilinear pass: dlib's chip is exactly our value truncated
            assert np.abs(np.floor(ours * 255 + 1e-6) - chip).mean() < 0.02


def test_chip_transform_matches_dlib_details(faces) -> None:
    for _, _, _, shape in faces:
        d = dlib.get_face_chip_details(shape, 150, 0.25)
        affine, width = face_chip_transform(_lm(shape), 150, 0.25)
        assert width.item() == pytest.approx(d.rect.width(), abs=1e-6)
        A = affine[0].numpy()
        assert np.arctan2(A[1, 0], A[0, 0]) == pytest.approx(d.angle, abs=1e-8)
        tl = A @ np.array([0.0, 0.0, 1.0])
        centre = A @ np.array([74.5, 74.5, 1.0])
        rect = d.rect
        mid = [(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2]
        np.testing.assert_allclose(centre, mid, atol=1e-6)
        # chip pixel (0, 0) is dlib's rectangle corner rotated about the centre
        c, s = np.cos(d.angle), np.sin(d.angle)
        half = np.array([rect.left() - centre[0], rect.top() - centre[1]])
        np.testing.assert_allclose(tl, centre + np.array([[c, -s], [s, c]]) @ half, atol=1e-6)


def test_mean_face_template_rederived_from_dlib() -> None:
    """Re-derive DLIB_MEAN_FACE by probing dlib's least-squares chip fit with unit nudges."""
    rng = np.random.default_rng(1)
    q0 = np.round(rng.uniform(2000, 8000, size=(68, 2)))
    S = 1000

    def params(q: np.ndarray) -> np.ndarray:
        pts = [dlib.point(int(x), int(y)) for x, y in q]
        d = dlib.get_face_chip_details(
            dlib.full_object_detection(dlib.rectangle(0, 0, 9, 9), pts), S, 0.0
        )
        s = d.rect.width() / S
        a, b = s * np.cos(d.angle), s * np.sin(d.angle)
        c = np.array([(d.rect.left() + d.rect.right()) / 2, (d.rect.top() + d.rect.bottom()) / 2])
        t = c - np.array([[a, -b], [b, a]]) @ np.array([S / 2, S / 2])
        return np.array([a, b, *t])

    base = params(q0)
    G = np.zeros((4, 136))
    for k in range(136):
        q = q0.copy()
        q.reshape(-1)[k] += 1000
        G[:, k] = (params(q) - base) / 1000
    used = np.flatnonzero(np.abs(G).reshape(4, 68, 2).sum((0, 2)) > 1e-9)
    assert tuple(used) == CHIP_LANDMARKS
    A = np.linalg.pinv(G[:, np.ravel([[2 * i, 2 * i + 1] for i in used])])
    tmpl = np.stack([A[0::2, 0], -A[0::2, 1]], 1) / S
    np.testing.assert_allclose(tmpl, np.array(DLIB_MEAN_FACE), atol=2e-6)


def test_distances_behave_like_dlib(net, dlib_models, faces) -> None:
    rec, sp = dlib_models
    ours = [_ours(net, img, shape) for _, img, _, shape in faces]
    theirs = [np.array(rec.compute_face_descriptor(img, shape)) for _, img, _, shape in faces]
    # different people: > 0.6, and our distances track dlib's
    for i in range(len(faces)):
        for j in range(i + 1, len(faces)):
            d_ours = np.linalg.norm(ours[i] - ours[j])
            d_dlib = np.linalg.norm(theirs[i] - theirs[j])
            assert d_ours > 0.6
            assert abs(d_ours - d_dlib) < 0.02
    # same person under flip / brightness / rescale: < 0.6, tracking dlib
    for k in (0, 4):  # einstein (grey photo) and takeo (small face)
        _, img, box, _ = faces[k]
        H, W = img.shape[:2]
        flip = np.ascontiguousarray(img[:, ::-1])
        bright = np.clip(img.astype(np.float64) * 1.25 + 5, 0, 255).astype(np.uint8)
        small = cv2.resize(img, (int(W * 0.8), int(H * 0.8)), interpolation=cv2.INTER_AREA)
        sx, sy = small.shape[1] / W, small.shape[0] / H
        fbox = dlib.rectangle(W - 1 - box.right(), box.top(), W - 1 - box.left(), box.bottom())
        cases = [
            (flip, fbox),
            (bright, box),
            (
                small,
                dlib.rectangle(
                    round(box.left() * sx), round(box.top() * sy),
                    round(box.right() * sx), round(box.bottom() * sy),
                ),
            ),
        ]  # fmt: skip
        for im2, box2 in cases:
            s2 = sp(im2, box2)
            d_ours = np.linalg.norm(_ours(net, im2, s2) - ours[k])
            d_dlib = np.linalg.norm(np.array(rec.compute_face_descriptor(im2, s2)) - theirs[k])
            assert 0.01 < d_ours < 0.6
            assert abs(d_ours - d_dlib) < 0.02


def test_batch_equals_single(net, faces) -> None:
    _, img, _, shape = faces[1]  # pyramid path
    _, img2, _, shape2 = faces[4]  # plain bilinear path
    h, w = img2.shape[:2]
    canvas = np.zeros_like(img)
    canvas[:h, :w] = img2
    batch = torch.cat([_img(img), _img(canvas)])
    lm = torch.cat([_lm(shape), _lm(shape2)])
    with torch.no_grad():
        both = embed(net, batch, lm)
    np.testing.assert_allclose(both[0].numpy(), _ours(net, img, shape), atol=1e-5)
    np.testing.assert_allclose(both[1].numpy(), _ours(net, img2, shape2), atol=1e-5)


def test_five_point_input_close(net, faces) -> None:
    _, img, _, shape = faces[4]
    lm = _lm(shape)
    lm5 = torch.stack(
        [(lm[:, 36] + lm[:, 39]) / 2, (lm[:, 42] + lm[:, 45]) / 2, lm[:, 30], lm[:, 48], lm[:, 54]],
        1,
    )
    with torch.no_grad():
        d = (embed(net, _img(img), lm5) - embed(net, _img(img), lm)).norm().item()
    assert d < 0.2
    with pytest.raises(ValueError):
        facerec_crop(_img(img), lm[:, :10])


def test_gradient_pixels_finite_difference(net, faces) -> None:
    """d(embedding)/d(pixel) through crop + network, float64, central differences."""
    net64 = load_facerec(dtype=torch.float64)
    _, img, _, shape = faces[4]
    image = _img(img, torch.float64)
    lm = _lm(shape)
    w = torch.randn(128, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def f(x: torch.Tensor) -> torch.Tensor:
        return (embed(net64, x, lm) * w).sum()

    x = image.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(x), x)
    assert grad.abs().sum() > 0
    centre = face_chip_transform(lm)[0][0] @ torch.tensor([75.0, 75.0, 1.0], dtype=torch.float64)
    cx, cy = (int(v) for v in centre)
    eps = 1e-4
    for c, dy, dx in ((0, 0, 0), (1, -9, 7), (2, 12, -5), (1, 20, 3)):
        e = torch.zeros_like(image)
        e[0, c, cy + dy, cx + dx] = eps
        with torch.no_grad():
            fd = (f(image + e) - f(image - e)) / (2 * eps)
        g = grad[0, c, cy + dy, cx + dx]
        assert g.abs() > 1e-6
        assert fd.item() == pytest.approx(g.item(), rel=1e-4, abs=1e-9)


def test_gradient_landmarks_and_pyramid_gradcheck() -> None:
    """gradcheck of the crop w.r.t. the image (pyramid path) and w.r.t. landmarks."""
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.avg_pool2d(
        torch.rand(1, 3, 96, 96, generator=g, dtype=torch.float64), 5, 1, 2
    )
    lm = torch.zeros(1, 68, 2, dtype=torch.float64)
    tmpl = (0.25 + torch.tensor(DLIB_MEAN_FACE, dtype=torch.float64)) / 1.5
    lm[0, list(CHIP_LANDMARKS)] = (
        tmpl * 60 + 18 + 0.3 * torch.randn(33, 2, generator=g, dtype=torch.float64)
    )
    lm.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda p: facerec_crop(img, p, size=12), (lm,), eps=1e-6, atol=1e-6, fast_mode=True
    )
    big = torch.nn.functional.interpolate(img, size=(200, 200), mode="bilinear")
    big.requires_grad_(True)
    lm_big = lm.detach() * 200 / 96
    assert face_chip_transform(lm_big, size=30)[1].item() > 60  # pyramid path for a 30 px chip
    assert torch.autograd.gradcheck(
        lambda x: facerec_crop(x, lm_big, size=30)[..., ::7, ::7],
        (big,),
        eps=1e-6,
        atol=1e-6,
        fast_mode=True,
    )


def test_cache_roundtrip(tmp_path: Path, monkeypatch, net) -> None:
    monkeypatch.setenv("FACERECON_CACHE", str(tmp_path))
    a = load_facerec()
    files = list(tmp_path.glob("dlib_facerec_*.pt"))
    assert len(files) == 1 and str(default_facerec_path().stat().st_size) in files[0].name
    b = load_facerec()
    x = torch.rand(2, 3, 150, 150, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
        torch.testing.assert_close(a(x), net(x), rtol=0, atol=0)
    files[0].write_bytes(b"corrupt")
    c = load_facerec()
    with torch.no_grad():
        torch.testing.assert_close(c(x), a(x), rtol=0, atol=0)
    assert not any(p.requires_grad for p in c.parameters()) and not c.training


def test_load_errors(tmp_path: Path) -> None:
    from facerecon.errors import ModelFileError

    with pytest.raises(ModelFileError, match="not found"):
        load_facerec(tmp_path / "missing.dat")
    bad = tmp_path / "bad.dat"
    bad.write_bytes(default_facerec_path().read_bytes()[:5000])
    with pytest.raises(ModelFileError):
        load_facerec(bad, cache=False)

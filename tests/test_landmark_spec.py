"""Detector-calibrated landmark definitions, their noise weights and the robust landmark loss."""

from __future__ import annotations

import json

import numpy as np
import torch

from facerecon.fit import FitConfig, landmark_spec, spec_candidates, spec_landmarks
from facerecon.fit.landmarks import calibration_path
from facerecon.losses import landmark_loss
from facerecon.render import CameraConfig


def test_uncalibrated_spec_is_the_model_vertices(model):
    spec = landmark_spec(model, detector=None, contour=False)
    v = model.mean_shape[None] + 0.1 * torch.randn(1, *model.mean_shape.shape)
    cand = spec_candidates(spec, lambda i: v[:, i])
    assert torch.equal(cand[:, :, 0], v[:, model.landmarks68])
    assert spec.sigma is None and spec.detector is None
    assert landmark_spec(model, detector="no-such-detector").index is None


def test_shipped_dlib_calibration_is_a_surface_point_with_noise(model):
    path = calibration_path("bfm-lite", "dlib")
    doc = json.loads(path.read_text())
    assert doc["faces"] >= 100 and "calibrate_landmarks.py" in doc["command"]
    spec = landmark_spec(model, detector="dlib")
    assert spec.detector == "dlib" and spec.sigma.shape == (68,)
    w = spec.weight.numpy()
    assert np.allclose(w.sum(1), 1.0, atol=1e-5) and (w >= -1e-6).all()
    # the jaw is the noisiest group, the eyes and mouth the most precise
    s = spec.sigma.numpy()
    assert s[:17].mean() > 1.5 * s[36:48].mean() and s[:17].mean() > 1.5 * s[48:].mean()
    # inner points move a few millimetres off the model's vertices, on the surface
    v = model.mean_shape.double()
    p = (v[spec.index] * spec.weight.double()[..., None]).sum(1).numpy()
    shift = np.linalg.norm(p[17:] - v[model.landmarks68[17:]].numpy(), axis=1)
    assert 0.5 < shift.mean() < 6.0 and shift.max() < 15.0


def test_noise_grows_with_yaw_on_the_far_side(model):
    """Calibrated per signed-yaw bin: a turned face's far-side points (detectors put them on
    the visible outline) are noisier than at frontal; the jaw more than the inner points."""
    spec = landmark_spec(model, detector="dlib")
    yaw = torch.tensor([0.0, 50.0, -50.0])
    s = spec.sigma_at(yaw)
    assert s.shape == (3, 68)
    assert (s[1:, :17].mean(1) > 1.5 * s[0, :17].mean()).all()
    assert (s[1:, 17:].mean(1) > 1.3 * s[0, 17:].mean()).all()
    mp = landmark_spec(model, detector="mediapipe")
    assert mp.detector == "mediapipe" and mp.sigma_at(yaw).shape == (3, 68)


def test_noise_grows_past_the_end_bins_only_when_asked(model):
    """``growth``: past the calibration's end bins' centres (+-50 degrees) the noise is raised
    by ``1 + growth * degrees / 10`` (x2 at 60 with growth 1, both sides); inside them it is
    the calibration's; without growth it stays the end bin's. Off by default (measured, see
    ``FitConfig.landmark_sigma_growth``)."""
    from facerecon.fit import FitConfig
    from facerecon.methods.multiview import multiview_config

    spec = landmark_spec(model, detector="dlib")
    yaw = torch.tensor([60.0, 50.0, -70.0, -50.0, 20.0])
    clamped, grown = spec.sigma_at(yaw), spec.sigma_at(yaw, growth=1.0)
    torch.testing.assert_close(clamped[0], clamped[1])  # clamped at the end bin
    torch.testing.assert_close(grown[0], 2.0 * clamped[1])
    torch.testing.assert_close(grown[2], 3.0 * clamped[3])
    torch.testing.assert_close(grown[1:2], clamped[1:2])
    torch.testing.assert_close(grown[3:], clamped[3:])
    assert FitConfig().landmark_sigma_growth == 0.0
    assert multiview_config(FitConfig()).landmark_sigma_growth == 0.0


def test_spec_landmarks_have_finite_gradients(model):
    spec = landmark_spec(model, detector="dlib")
    v = model.mean_shape[None].clone().double().requires_grad_(True)
    angles = torch.tensor([[0.1, 0.4, 0.0]], dtype=torch.float64, requires_grad=True)
    trans = torch.zeros(1, 3, dtype=torch.float64)
    spec = landmark_spec(model, detector="dlib")
    spec.weight = spec.weight.double()
    lm = spec_landmarks(spec, v, angles, trans, CameraConfig())
    lm.square().sum().backward()
    assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0
    assert torch.isfinite(angles.grad).all()


def test_jaw_only_candidates_equal_every_candidate_projected(model):
    """:func:`spec_candidates` evaluates only the jaw rows' contour candidates and
    :func:`project_landmarks` projects only those and the other rows' own points; both equal
    the plain computation (every row's candidates, all projected, the contour choice taken on
    the jaw rows), values and gradients, for a calibrated and an uncalibrated spec."""
    from facerecon.fit.contour import select_contour
    from facerecon.fit.landmarks import project_landmarks
    from facerecon.render import project, transform

    g = torch.Generator().manual_seed(3)
    camera = CameraConfig()
    for detector in ("dlib", None):
        spec = landmark_spec(model, detector=detector)
        if spec.weight is not None:
            spec.weight = spec.weight.double()
        v0 = model.mean_shape[None].double() + 2.0 * torch.randn(2, *model.mean_shape.shape,
                                                                 generator=g).double()  # fmt: skip
        angles0 = torch.tensor([[0.1, 0.7, 0.05], [-0.2, -0.5, 0.0]], dtype=torch.float64)
        trans = torch.tensor([[3.0, -2.0, 5.0], [0.0, 1.0, -4.0]], dtype=torch.float64)
        results = []
        for plain in (False, True):
            v = v0.clone().requires_grad_(True)
            angles = angles0.clone().requires_grad_(True)
            if plain:  # every row: table candidates; inner rows replaced by the surface point
                cand = v[:, spec.table]
                if spec.index is not None:
                    point = (v[:, spec.index] * spec.weight[None, ..., None]).sum(-2)
                    cand = torch.cat([cand[:, :17], point[:, 17:, None].expand_as(cand[:, 17:])],
                                     dim=1)  # fmt: skip
                B, L, K, _ = cand.shape
                uv, _ = project(transform(cand.reshape(B, L * K, 3), angles, trans, camera), camera)
                uv = uv.reshape(B, L, K, 2)
                is_jaw = torch.arange(L) < 17
                choice = select_contour(uv, is_jaw)
                lm = torch.gather(uv, 2, choice[:, :, None, None].expand(B, L, 1, 2))[:, :, 0]
                assert cand.shape[2] > 1
            else:
                lm = project_landmarks(spec_candidates(spec, lambda i, v=v: v[:, i]), angles,
                                       trans, camera)  # fmt: skip
            (lm * torch.linspace(-1, 1, 136, dtype=lm.dtype).view(1, 68, 2)).sum().backward()
            results.append((lm.detach(), v.grad, angles.grad))
        for a, b in zip(*results, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
        # the contour moved: at these yaws jaw points are not their fixed vertices
        fixed, _ = project(transform(v0[:, spec.table[:17, 0]], angles0, trans, camera), camera)
        assert (results[0][0][:, :17] - fixed).norm(dim=-1).max() > 1.0


def test_landmark_points_equal_each_spec_on_the_model_shape(model):
    """:class:`LandmarkPoints` (the rows of every spec gathered once, one shape evaluation and
    one projection for all) gives each spec's :func:`spec_landmarks` of the model's shape:
    values and gradients for the coefficients and the pose, calibrated and uncalibrated specs
    together."""
    from facerecon.fit.landmarks import LandmarkPoints

    specs = [landmark_spec(model, d) for d in ("dlib", "mediapipe", None)]
    specs.append(landmark_spec(model, None, contour=False))
    g = torch.Generator().manual_seed(5)
    camera = CameraConfig()
    id0 = torch.randn(2, model.id_basis.shape[-1], generator=g)
    exp0 = torch.randn(2, model.exp_basis.shape[-1], generator=g)
    angles0 = torch.tensor([[0.1, 0.7, 0.05], [-0.2, -0.5, 0.0]])
    trans = torch.tensor([[0.03, -0.02, 0.05], [0.0, 0.01, -0.04]])
    points = LandmarkPoints(model, specs)
    results = []
    for gathered in (True, False):
        ids, exp, angles = (x.clone().requires_grad_(True) for x in (id0, exp0, angles0))
        if gathered:
            lms = points(ids, exp, angles, trans, camera)
        else:
            v = model.shape(ids, exp)
            lms = [spec_landmarks(s, v, angles, trans, camera) for s in specs]
        w = torch.linspace(-1, 1, 136).view(1, 68, 2)
        sum((lm * w * (k + 1)).sum() for k, lm in enumerate(lms)).backward()
        results.append((torch.stack([lm.detach() for lm in lms]), ids.grad, exp.grad, angles.grad))
    assert results[0][0].shape == (4, 2, 68, 2)
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)
    # the specs differ (so each was computed from its own rows)
    assert (results[0][0][0] - results[0][0][1]).abs().max() > 0.5


def test_robust_landmark_loss():
    target = torch.zeros(1, 68, 2, dtype=torch.float64)
    small = torch.full((1, 68, 2), 0.01, dtype=torch.float64)
    assert torch.allclose(landmark_loss(small, target, robust=4.0), landmark_loss(small, target),
                          rtol=1e-4)  # fmt: skip
    outlier = small.clone()
    outlier[0, 5] = 40.0
    assert landmark_loss(outlier, target, robust=4.0) < 0.1 * landmark_loss(outlier, target)
    x = small.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: landmark_loss(p, target, robust=4.0), (x,))


def test_sigma_weighting_is_used_by_the_fit(model):
    """With learning rates 0 the logged landmark term equals the calibrated, noise-weighted loss."""
    import dataclasses

    from facerecon.fit import FitTarget, fit
    from facerecon.fit.core import SIGMA_REF_PX
    from facerecon.fit.landmarks import project_landmarks

    lm = torch.full((1, 68, 2), 112.0) + torch.randn(1, 68, 2)
    target = FitTarget(torch.full((1, 3, 224, 224), 0.5), lm)
    cfg = dataclasses.replace(
        FitConfig.fast(), landmark_detector="dlib", landmark_weighting="sigma", landmark_robust=0.0,
        lr_angles=0.0, lr_trans=0.0, lr_id=0.0, lr_exp=0.0, landmark_iters=3,
        coarse=dataclasses.replace(FitConfig.fast().coarse, iters=0),
        fine=dataclasses.replace(FitConfig.fast().fine, iters=0),
    )  # fmt: skip
    res = fit(model, target, cfg)
    spec = landmark_spec(model, detector="dlib")
    zero = torch.zeros(1, 3)
    pred = project_landmarks(spec_candidates(spec, lambda i: model.mean_shape[None][:, i]),
                             zero, zero, CameraConfig())  # fmt: skip
    w = (SIGMA_REF_PX / spec.sigma_at(torch.zeros(1)).clamp_min(0.5)) ** 2  # at yaw 0
    expect = cfg.loss.w_landmark * float(landmark_loss(pred, lm, weights=w))
    assert abs(res.history[-1]["landmark"] - expect) < 1e-6 * max(1.0, expect)

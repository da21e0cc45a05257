"""PGN: Procrustes pose (exact recovery, gradients), the network, its training step and data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facerecon.render import (
    CameraConfig,
    euler_to_matrix,
    matrix_to_euler,
    pose_from_landmarks,
    project,
    transform,
    umeyama,
)


def _posed_landmarks(model, angles, trans, camera):
    """Model landmarks posed and seen by the crop camera as (u, v, depth px) (B, 68, 3)."""
    pts = model.mean_shape[model.landmarks68][None].double().expand(len(angles), -1, -1)
    scene = transform(pts, angles, trans, camera)
    uv, depth = project(scene, camera)
    z = scene[..., 2]
    d = (z - z.mean(1, keepdim=True)) * camera.focal / depth.mean(1, keepdim=True)
    return pts, torch.cat([uv, d[..., None]], -1)


def test_umeyama_recovers_a_known_similarity_exactly():
    g = torch.Generator().manual_seed(0)
    src = torch.randn(3, 30, 3, generator=g, dtype=torch.float64)
    R = euler_to_matrix(torch.randn(3, 3, generator=g, dtype=torch.float64))
    s = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    t = torch.randn(3, 3, generator=g, dtype=torch.float64)
    dst = s[:, None, None] * src @ R.transpose(1, 2) + t[:, None]
    w = torch.rand(3, 30, generator=g, dtype=torch.float64) + 0.1
    for weights in (None, w):
        s2, R2, t2 = umeyama(src, dst, weights)
        assert torch.allclose(s2, s, atol=1e-10) and torch.allclose(R2, R, atol=1e-10)
        assert torch.allclose(t2, t, atol=1e-10)
    # a reflection in the data is never returned: det(R) = +1
    _, Rm, _ = umeyama(src, dst * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    assert torch.allclose(torch.det(Rm), torch.ones(3, dtype=torch.float64))


def test_matrix_to_euler_inverts_euler_to_matrix():
    g = torch.Generator().manual_seed(1)
    a = (torch.rand(64, 3, generator=g, dtype=torch.float64) - 0.5) * torch.tensor(
        [2.0, 2.9, 2.0], dtype=torch.float64
    )
    assert torch.allclose(matrix_to_euler(euler_to_matrix(a)), a, atol=1e-9)


@pytest.mark.parametrize("yaw_deg", [0.0, 45.0, -80.0])
def test_pose_from_landmarks_recovers_a_perspective_pose(model, yaw_deg):
    cam = CameraConfig()
    angles = torch.tensor([[0.2, np.deg2rad(yaw_deg), -0.1]], dtype=torch.float64)
    trans = torch.tensor([[0.05, -0.08, 0.6]], dtype=torch.float64)
    pts, lm = _posed_landmarks(model, angles, trans, cam)
    weak, _, _ = pose_from_landmarks(pts, lm, cam, perspective_iters=0)
    a2, t2, scale = pose_from_landmarks(pts, lm, cam, perspective_iters=4)
    assert torch.allclose(a2, angles, atol=1e-6) and torch.allclose(t2, trans, atol=1e-5)
    assert float(scale) == pytest.approx(cam.focal / (cam.cam_dist - 0.6), rel=0.02)
    # the perspective rounds matter: scaled orthography alone is off by more
    assert float((weak - angles).abs().max()) > 10 * float((a2 - angles).abs().max())


def test_pose_from_landmarks_gradients(model):
    cam = CameraConfig()
    angles = torch.tensor([[0.1, 0.5, 0.05]], dtype=torch.float64)
    pts, lm = _posed_landmarks(model, angles, torch.zeros(1, 3, dtype=torch.float64), cam)
    lm = (lm + 0.3 * torch.randn_like(lm)).requires_grad_(True)
    pts = pts[:, :20].clone().requires_grad_(True)

    def f(p, q):
        a, t, s = pose_from_landmarks(p, q, cam, perspective_iters=1)
        return torch.cat([a, t, s[:, None]], 1)

    assert torch.autograd.gradcheck(f, (pts, lm[:, :20]), atol=1e-6, rtol=1e-4)


def test_pgn_forward_from_rnet_and_files(model, tmp_path):
    from facerecon.morphable.layout import CoeffLayout
    from facerecon.nets.pgn import (
        export_pgn,
        from_rnet,
        landmark_template,
        load_pgn,
        pgn_coeffs,
        predict_pgn,
        save_pgn,
    )
    from facerecon.nets.rnet import RNet

    torch.manual_seed(0)
    rnet = RNet(model.layout, "mobilenet_v2", width_mult=0.25, input_size=64).eval()
    torch.nn.init.normal_(rnet.head.weight, std=0.01)
    net = from_rnet(rnet, model).eval()
    x = torch.rand(2, 3, 224, 224)
    out = net(x)
    assert out["shape"].shape == (
        2,
        model.layout.n_id + model.layout.n_exp + model.layout.n_tex + 27,
    )
    assert out["lm3d"].shape == (2, 68, 3)
    # the shape head starts as the R-Net's rows; the landmark head at the template
    with torch.no_grad():
        r = model.layout.split(rnet(x))
    lay = model.layout
    assert torch.allclose(out["shape"][:, : lay.n_id], r["id_coeff"], atol=1e-6)
    assert torch.allclose(out["shape"][:, -27:], r["gamma"], atol=1e-6)
    assert torch.allclose(out["lm3d"], landmark_template(model).expand(2, -1, -1), atol=1e-5)
    # zero shape at the template is the frontal pose
    zero = {"shape": torch.zeros(1, out["shape"].shape[1]), "lm3d": landmark_template(model)[None]}
    p = lay.split(pgn_coeffs(model, zero))
    assert float(p["angles"].abs().max()) < 1e-3 and float(p["trans"].abs().max()) < 0.02
    coeffs, _ = predict_pgn(net, model, x)
    assert coeffs.shape == (2, lay.size) and torch.isfinite(coeffs).all()
    for save in (save_pgn, export_pgn):
        path = save(net, tmp_path / f"{save.__name__}.pt", {"note": "test"})
        back = load_pgn(path)
        tol = 1e-6 if save is save_pgn else 5e-2
        assert torch.allclose(predict_pgn(back, model, x)[0], coeffs, atol=tol)
    assert net.layout == CoeffLayout(lay.n_id, lay.n_exp, lay.n_tex)


def test_flip_averaged_landmarks_are_mirror_equivariant(model):
    """predict_pgn(flip=True) of a mirrored crop is the mirror image of its prediction on the
    crop (so the averaging maps points and pixels correctly)."""
    from facerecon.nets.pgn import flip_landmarks, from_rnet, predict_pgn
    from facerecon.nets.rnet import RNet

    torch.manual_seed(1)
    rnet = RNet(model.layout, "mobilenet_v2", width_mult=0.25, input_size=64).eval()
    net = from_rnet(rnet, model).eval()
    torch.nn.init.normal_(net.lm_head.weight, std=0.05)
    x = torch.rand(2, 3, 224, 224, dtype=torch.float64)
    net = net.double()
    _, plain = predict_pgn(net, model, x)
    _, lm = predict_pgn(net, model, x, flip=True)
    _, lm_m = predict_pgn(net, model, x.flip(-1), flip=True)
    assert torch.allclose(lm_m, flip_landmarks(lm, 224), atol=1e-9)
    assert not torch.allclose(lm, plain, atol=1e-3)  # the mirror changed the prediction
    assert torch.allclose(flip_landmarks(flip_landmarks(lm, 224), 224), lm)


def test_pgn_terms_train_the_landmark_head_through_the_pose(model):
    from facerecon.nets.pgn import PGNConfig, PGNet, landmark_template
    from facerecon.train.pgn import consistent_identity, pgn_loss, pgn_terms

    torch.manual_seed(0)
    lay = model.layout
    net = PGNet(PGNConfig(lay.n_id, lay.n_exp, lay.n_tex, "mobilenet_v2", 0.25, 64))
    with torch.no_grad():
        net.template.copy_(landmark_template(model))
    x = torch.rand(4, 3, 224, 224)
    out = net(x)
    lm68 = landmark_template(model)[None, :, :2].expand(4, -1, -1) + 5.0
    terms = pgn_terms(model, out, x, lm68, torch.ones(4, 1, 224, 224), 2, "mean",
                      torch.zeros(4, 68), pgn_loss(), render_size=64)  # fmt: skip
    assert {"photo", "landmark", "coef", "lm2d", "lm3d"} <= set(terms)
    terms["landmark"].backward()  # only through the Procrustes pose and the shape head
    assert net.lm_head.weight.grad is not None and float(net.lm_head.weight.grad.abs().sum()) > 0
    ids = torch.arange(12.0).view(2, 3, 2)
    assert torch.equal(consistent_identity(ids, "mean")[:, 0], ids.mean(1))
    assert torch.equal(consistent_identity(ids, "swap")[:, 0], ids[:, 1])
    assert torch.equal(consistent_identity(ids, "none"), ids)


def test_depth_labels_follow_the_augmentation():
    from facerecon.data.augment import (
        FLIP_68,
        AugmentConfig,
        augment_sample,
        augment_sample_depth,
    )

    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    lm = np.random.default_rng(1).uniform(10, 50, (68, 2))
    depth = np.arange(68, dtype=np.float64)
    for seed in range(4):
        cfg = AugmentConfig(shift=3, scale=0.2, rotation=10, flip=0.0)
        a = augment_sample(img, lm, np.random.default_rng(seed), cfg)
        b = augment_sample_depth(img, lm, depth, np.random.default_rng(seed), cfg)
        assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1])  # the same draws
        # depth scales like the landmarks' spread (rotation and shift leave it alone)
        scale = (
            np.linalg.norm(b[1] - b[1].mean(0), axis=1).mean()
            / np.linalg.norm(lm - lm.mean(0), axis=1).mean()
        )
        assert np.allclose(b[3], depth * scale, rtol=1e-6)
    flip = AugmentConfig(shift=0, scale=0, rotation=0, flip=1.0)
    _, _, _, d = augment_sample_depth(img, lm, depth, np.random.default_rng(0), flip)
    assert np.array_equal(d, depth[FLIP_68])


def test_synthetic_items_carry_3d_landmark_labels(model, tmp_path):
    from facerecon.data.datasets import PreparedFaceDataset
    from facerecon.data.synthetic import SynthConfig, SyntheticFaces
    from facerecon.data.synthetic_prepared import write_prepared

    faces = SyntheticFaces(model, SynthConfig(image_size=160, max_yaw_deg=80), seed=3)
    write_prepared(tmp_path, faces, range(2), 2, attention=False)
    ds = PreparedFaceDataset(tmp_path)
    item = ds[0]
    assert item["lm_depth"].shape == (68,) and item["angles"].shape == (3,)
    # depth is relative (zero mean) and the near side is positive: at yaw > 0 the subject's
    # left (landmarks 9-16, image right) turns away from the camera
    d = item["lm_depth"].numpy()
    assert abs(d.mean()) < 1e-3
    yaw = float(item["angles"][1])
    if abs(yaw) > 0.3:
        assert np.sign(d[:8].mean() - d[9:17].mean()) == np.sign(yaw)
    # the nose tip is in front of the eyes
    assert d[30] > d[36:48].mean()


def test_training_can_start_from_pgn_weights(model, tmp_path):
    """``init_pgn`` (``facerecon train pgn --init-pgn``): the net to train is the saved one,
    in training mode, its predictions unchanged; weights of another face model are refused."""
    from facerecon.morphable.layout import CoeffLayout
    from facerecon.nets.pgn import from_rnet, predict_pgn, save_pgn
    from facerecon.nets.rnet import RNet
    from facerecon.train.config import ConfigError
    from facerecon.train.pgn import PGNTrainConfig, _build_net

    torch.manual_seed(2)
    rnet = RNet(model.layout, "mobilenet_v2", width_mult=0.25, input_size=64).eval()
    net = from_rnet(rnet, model).eval()
    torch.nn.init.normal_(net.lm_head.weight, std=0.05)
    path = save_pgn(net, tmp_path / "pgn.pt", {"note": "test"})
    built = _build_net(PGNTrainConfig(init_pgn=str(path), data=str(tmp_path)), model)
    assert built.training
    x = torch.rand(2, 3, 224, 224)
    assert torch.allclose(predict_pgn(built.eval(), model, x)[0], predict_pgn(net, model, x)[0])

    class Small:  # a face model of another layout, as far as _build_net looks
        layout = CoeffLayout(8, 4, 4)
        mean_shape = model.mean_shape

    with pytest.raises(ConfigError, match="not a PGN of face model"):
        _build_net(PGNTrainConfig(init_pgn=str(path), data=str(tmp_path)), Small())

"""DF-MVR: involution, attention gates, the multi-view net, its losses and its training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facerecon.losses import landmark3d_loss, parse_loss, similarity_align
from facerecon.morphable.layout import CoeffLayout
from facerecon.nets.involution import Involution2d, RedNet, involution
from facerecon.nets.mvr import AttentionGate, MVRConfig, MVRNet, export_mvr, load_mvr, slot_order

LAYOUT = CoeffLayout(8, 6, 5)


def _tiny() -> MVRConfig:
    return MVRConfig(
        LAYOUT.n_id, LAYOUT.n_exp, LAYOUT.n_tex, width_mult=1 / 16, fused_channels=16,
        rednet_depths=(1, 1, 1, 1), rednet_width=0.25, input_size=32,
    )  # fmt: skip


def _naive_involution(x, kernel, k, stride):
    b, c, _h, _w = x.shape
    g = kernel.shape[1]
    xp = torch.nn.functional.pad(x, (k // 2,) * 4)
    ho, wo = kernel.shape[-2:]
    out = torch.zeros(b, c, ho, wo, dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride : i * stride + k, j * stride : j * stride + k]
            ker = kernel[:, :, :, i, j].view(b, g, 1, k, k)
            out[:, :, i, j] = (patch.view(b, g, c // g, k, k) * ker).sum((-1, -2)).view(b, c)
    return out


@pytest.mark.parametrize("stride,h", [(1, 7), (2, 8), (2, 7)])
def test_involution_matches_a_direct_loop(stride, h):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, h, h, generator=g, dtype=torch.float64)
    ho = -(-h // stride)
    kernel = torch.randn(2, 2, 9, ho, ho, generator=g, dtype=torch.float64)
    got = involution(x, kernel, 3, stride)
    want = _naive_involution(x, kernel, 3, stride)
    assert torch.allclose(got, want, atol=1e-12)


def test_involution_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(1, 2, 9, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: involution(a, b, 3, 1), (x, kernel))
    layer = Involution2d(4, 3, 2, group_channels=2, reduction=2).double()
    y = torch.randn(1, 4, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (y,))
    assert layer(y).shape == (1, 4, 3, 3)


def test_attention_gate_shapes_gradients_and_range():
    torch.manual_seed(0)
    gate = AttentionGate(6, 4, 3).double()
    gsig = torch.randn(2, 6, 5, 5, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    out = gate(gsig, x)
    coeff = gate.coefficients(gsig, x)
    assert out.shape == x.shape and coeff.shape == (2, 1, 5, 5)
    assert bool(((coeff > 0) & (coeff < 1)).all())
    assert torch.allclose(out, x * coeff)
    assert torch.autograd.gradcheck(gate, (gsig, x))


def test_rednet_pools_any_input_size():
    net = RedNet(16, (1, 1, 1, 1), 0.25).eval()
    for s in (32, 37, 56):
        assert net(torch.randn(1, 16, s, s)).shape == (1, net.out_channels)


def test_mvr_net_any_subset_of_views():
    torch.manual_seed(0)
    net = MVRNet(_tiny())
    for head in (net.shared_head, net.view_head):  # non-zero heads: outputs depend on input
        torch.nn.init.normal_(head.weight, std=0.1)
    net.eval()
    img = torch.rand(4, 3, 3, 64, 64)
    parse = torch.randint(0, 10, (4, 3, 64, 64))
    present = torch.tensor([[1, 1, 1], [0, 1, 0], [1, 0, 1], [1, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        out = net(img, parse, present)
    assert out.shape == (4, 3, LAYOUT.size) and bool(torch.isfinite(out).all())
    parts = LAYOUT.split(out)
    for key in ("id_coeff", "exp_coeff", "tex_coeff"):  # one face per row
        assert torch.equal(parts[key][:, 0], parts[key][:, 2])
    # an absent view's pixels cannot change the estimate; a present view's do
    img2 = img.clone()
    img2[1, 0] = torch.rand(3, 64, 64)
    img2[0, 0] = torch.rand(3, 64, 64)
    with torch.no_grad():
        out2 = net(img2, parse, present)
    assert torch.equal(out2[1], out[1])
    assert not torch.allclose(out2[0], out[0])


def test_untrained_mvr_predicts_the_mean_face():
    net = MVRNet(_tiny()).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 3, 32, 32), torch.zeros(1, 3, 32, 32, dtype=torch.long))
    assert float(out.abs().max()) == 0.0


def test_slot_order_is_order_free_and_keeps_left_to_right():
    assert slot_order([2.0]) == [1]
    assert slot_order([40.0, -38.0, 1.0]) == [2, 0, 1]
    assert slot_order([-40.0, 5.0]) == [0, 1]
    assert slot_order([30.0, 60.0]) == [1, 2]
    with pytest.raises(ValueError):
        slot_order([0.0] * 4)


def test_mvr_weights_round_trip_in_half_precision(tmp_path):
    torch.manual_seed(0)
    net = MVRNet(_tiny())
    torch.nn.init.normal_(net.shared_head.weight, std=0.1)
    net.eval()
    path = export_mvr(net, tmp_path / "mvr.pt", meta={"command": "test"})
    back = load_mvr(path)
    x, p = torch.rand(1, 3, 3, 32, 32), torch.randint(0, 10, (1, 3, 32, 32))
    with torch.no_grad():
        assert torch.allclose(back(x, p), net(x, p), atol=2e-2)
    assert back.config == net.config


def test_similarity_align_undoes_a_similarity():
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(2, 68, 3, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    moved = 1.7 * pts @ q.T + torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64)
    back = similarity_align(moved, pts)
    assert torch.allclose(back, pts, atol=1e-9)
    assert float(landmark3d_loss(moved, pts)) < 1e-5
    noisy = pts.clone()
    noisy[:, 10] += 1.0  # a point off the 7 alignment points moved by sqrt(3)
    assert float(landmark3d_loss(noisy, pts)) == pytest.approx(3**0.5 / 68, rel=1e-3)


def test_parse_loss_of_a_soft_render_has_shape_gradient(model):
    """The parse-mask term is differentiable in the identity (the release's is not)."""
    from facerecon.labels import NUM_PARSE_CLASSES
    from facerecon.render import CameraConfig, render_parse

    cam = CameraConfig().scaled(64)
    angles = torch.tensor([[0.0, 0.3, 0.0]])
    trans = torch.zeros(1, 3)
    with torch.no_grad():  # the target: the parse of another identity
        other = torch.zeros(1, model.layout.n_id)
        other[0, :4] = torch.tensor([2.0, -1.5, 1.0, 1.5])
        v_t = model.shape(other, torch.zeros(1, model.layout.n_exp))
        target = render_parse(v_t, model.triangles, model.vertex_labels, angles, trans,
                              NUM_PARSE_CLASSES, cam).argmax(1)  # fmt: skip
    id_coeff = torch.zeros(1, model.layout.n_id, requires_grad=True)
    v = model.shape(id_coeff, torch.zeros(1, model.layout.n_exp))
    probs = render_parse(v, model.triangles, model.vertex_labels, angles, trans,
                         NUM_PARSE_CLASSES, cam)  # fmt: skip
    assert torch.allclose(probs.sum(1), torch.ones(1, 64, 64), atol=1e-5)
    loss = parse_loss(probs, target)
    (grad,) = torch.autograd.grad(loss, id_coeff)
    assert float(grad.abs().sum()) > 0
    # a step against the gradient lowers the loss
    with torch.no_grad():
        step = id_coeff - 0.2 * grad / grad.norm()
        v2 = model.shape(step, torch.zeros(1, model.layout.n_exp))
        p2 = render_parse(v2, model.triangles, model.vertex_labels, angles, trans,
                          NUM_PARSE_CLASSES, cam)  # fmt: skip
    assert float(parse_loss(p2, target)) < float(loss.detach())


def test_torch_weight_map_matches_the_numpy_one(model):
    from facerecon.detect.parsing import dfmvr_weight_map, parse_from_landmarks
    from facerecon.train.mvr import parse_weight_map

    rng = np.random.default_rng(0)
    pts = np.array([[60 + 100 * (i % 17) / 16, 90 + 60 * rng.random()] for i in range(68)])
    pts[17:27, 1] -= 40
    labels = parse_from_landmarks(pts, 224)
    want = dfmvr_weight_map(labels, normalise=True)
    got = parse_weight_map(torch.from_numpy(labels.astype(np.int64))[None], 224)[0, 0].numpy()
    assert got.shape == want.shape
    assert np.mean(np.isclose(got, want, atol=1e-6)) > 0.98


def test_view_dropout_keeps_at_least_one_view():
    from facerecon.train.mvr import drop_views

    g = torch.Generator().manual_seed(0)
    present = torch.ones(200, 3, dtype=torch.bool)
    out = drop_views(present, 0.5, (0.4, 0.6), generator=g)
    counts = out.sum(1)
    assert int(counts.min()) >= 1
    assert set(counts.tolist()) == {1, 2, 3}
    assert 0.35 < float((counts < 3).float().mean()) < 0.65
    one = torch.tensor([[False, True, False]])
    assert torch.equal(drop_views(one, 1.0, generator=g), one)


def test_a_few_training_steps_reduce_the_loss(tmp_path, model):
    from facerecon.data.synthetic import SynthConfig, SyntheticFaces
    from facerecon.data.view_triples import ViewTripleDataset, write_view_triples
    from facerecon.train.mvr import MVRTrainConfig, train_mvr

    faces = SyntheticFaces(model, SynthConfig(clean=True, background="flat"), seed=3)
    data = tmp_path / "triples"
    assert write_view_triples(data, faces, range(2)) == (2, 0)
    assert write_view_triples(data, faces, range(2)) == (0, 2)  # resumable
    item = ViewTripleDataset(data)[0]
    assert item["image"].shape == (3, 3, 224, 224) and bool(item["has_3d"])
    assert float(item["yaw"][0]) < float(item["yaw"][1]) < float(item["yaw"][2])
    cfg = MVRTrainConfig(
        data=str(data), out_dir=str(tmp_path / "run"), face_model="bfm-lite", render_size=64,
        batch_size=2, max_steps=16, lr=3e-3, val_fraction=0.0, view_dropout=0.0,
        ckpt_every=0, device="cpu", progress=False, seed=0,
    )  # fmt: skip
    res = train_mvr(cfg)
    losses = res["losses"]
    assert len(losses) == 16 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3])
    net = load_mvr(res["weights"])
    assert net.config == cfg.net_config(model)

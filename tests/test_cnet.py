"""C-Net: architecture, zero-initialised confidences reproduce averaging, files, R-Net features."""

from __future__ import annotations

import pytest
import torch

from facerecon.aggregate import STRATEGIES, aggregate_set, average, s4_elementwise
from facerecon.errors import ModelFileError
from facerecon.morphable.layout import CoeffLayout
from facerecon.nets.cnet import (
    CNet,
    CNetConfig,
    export_cnet_weights,
    load_cnet,
    predict_set,
    rnet_outputs,
    save_cnet,
)
from facerecon.nets.rnet import RNet

LAYOUT = CoeffLayout(40, 10, 16)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_rnet():
    torch.manual_seed(0)
    net = RNet(LAYOUT, backbone="mobilenet_v2", width_mult=0.25)
    # BatchNorm statistics of random images (default running stats make eval features vanish)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        net.train()(torch.rand(8, 3, 64, 64))
        net.head.weight.normal_(0, 0.05)  # a non-zero head so coefficients differ per image
    return net.eval()


def test_paper_architecture_shapes():
    net = CNet(80)  # ResNet-50 features
    shapes = [tuple(m.weight.shape) for m in net.convs if isinstance(m, torch.nn.Conv2d)]
    assert shapes == [(256, 256, 3, 3)] * 3
    assert all(m.stride == (2, 2) for m in net.convs if isinstance(m, torch.nn.Conv2d))
    assert tuple(net.fc1.weight.shape) == (512, 256 + 2048)
    assert tuple(net.fc2.weight.shape) == (80, 512)
    conf = net(torch.randn(2, 256, 28, 28), torch.randn(2, 2048))
    assert conf.shape == (2, 80)
    assert torch.equal(conf, torch.full((2, 80), 0.5))  # zero-initialised last layer


def test_zero_init_reproduces_average(tiny_rnet):
    cnet = CNet.for_rnet(tiny_rnet)
    g = torch.Generator().manual_seed(3)
    images = torch.rand(5, 3, 64, 64, generator=g)
    coeffs, conf = predict_set(tiny_rnet, cnet, images)
    assert conf.shape == (5, 40) and torch.equal(conf, torch.full_like(conf, 0.5))
    ids = LAYOUT.split(coeffs)["id_coeff"]
    assert float(ids.std(0).mean()) > 1e-3  # the images really give different identities
    assert torch.allclose(s4_elementwise(ids, conf), average(ids), atol=1e-6)
    for name in ("s1", "s2"):
        assert torch.allclose(STRATEGIES[name](ids, conf), average(ids), atol=1e-6)
    out = aggregate_set(coeffs, conf, LAYOUT, "s4")
    assert torch.allclose(LAYOUT.split(out)["id_coeff"], ids.mean(0).expand(5, 40), atol=1e-6)


def test_for_rnet_and_rnet_outputs(tiny_rnet):
    cnet = CNet.for_rnet(tiny_rnet)
    x = torch.rand(3, 3, 64, 64)
    coeffs, feats = rnet_outputs(tiny_rnet, x)
    with torch.no_grad():
        assert torch.allclose(coeffs, tiny_rnet(x), atol=1e-6)
    assert cnet.config.shallow_channels == feats["shallow"].shape[1]
    assert cnet.config.pooled_channels == feats["pooled"].shape[1] == tiny_rnet.pooled_channels
    assert cnet.n_id == LAYOUT.n_id
    assert CNet.for_rnet(tiny_rnet, n_id=1).n_id == 1  # S1: one scalar per image
    with pytest.raises(TypeError):
        CNet.for_rnet(cnet)


def test_save_load_export(tmp_path, tiny_rnet):
    torch.manual_seed(1)
    cnet = CNet.for_rnet(tiny_rnet, hidden=32)
    with torch.no_grad():
        cnet.fc2.weight.normal_(0, 0.1)
    sh, po = torch.randn(2, cnet.config.shallow_channels, 8, 8), torch.randn(2, 1280)
    want = cnet(sh, po)
    p = save_cnet(cnet, tmp_path / "c.pt", meta={"step": 3})
    back = load_cnet(p)
    assert back.config == cnet.config and not back.training
    assert torch.equal(back(sh, po), want)
    h = export_cnet_weights(cnet, tmp_path / "c16.pt")
    assert h.stat().st_size < 0.6 * p.stat().st_size
    half = load_cnet(h)
    assert next(half.parameters()).dtype == torch.float32
    assert float((half(sh, po) - want).abs().max().detach()) < 2e-3
    assert CNetConfig.from_dict({**cnet.config.__dict__, "junk": 1}) == cnet.config
    with pytest.raises(ModelFileError):
        load_cnet(tmp_path / "missing.pt")
    torch.save({"format": "other"}, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match="not a facerecon C-Net"):
        load_cnet(tmp_path / "bad.pt")


def test_dtype_agnostic():
    cnet = CNet(4, 8, 16, conv_channels=8, hidden=8).double()
    conf = cnet(torch.randn(2, 8, 12, 12, dtype=torch.float64), torch.randn(2, 16).double())
    assert conf.dtype == torch.float64 and conf.shape == (2, 4)

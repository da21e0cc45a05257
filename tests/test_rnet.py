"""R-Net and backbones: real architectures' shapes and names, zero head, ImageNet weights, files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facerecon.errors import ModelFileError
from facerecon.morphable.layout import BFM09_LAYOUT, CoeffLayout
from facerecon.nets.backbones import (
    load_backbone_state,
    load_mobilenet_v2_imagenet,
    mobilenet_v2,
    mobilenet_v2_imagenet_path,
    resnet50,
)
from facerecon.nets.rnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RNet,
    export_weights,
    load_rnet,
    predict_coeffs,
    save_rnet,
    training_loss_config,
)

LITE = CoeffLayout(40, 10, 16)  # bfm-lite: 99 coefficients
ASTRONAUT = Path(__file__).resolve().parents[1] / "src/facerecon/assets/astronaut.jpg"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_layout_sizes():
    assert LITE.size == 99
    assert BFM09_LAYOUT.size == 257


def test_resnet50_torchvision_layout():
    net = resnet50()
    sd = net.state_dict()
    assert len(sd) == 320  # torchvision resnet50: 161 parameters + 159 BN buffers
    assert sum(p.numel() for p in net.parameters()) == 25_557_032
    for key in ("conv1.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.running_var"):
        assert key in sd
    assert tuple(sd["layer3.0.conv2.weight"].shape) == (256, 256, 3, 3)
    assert tuple(sd["fc.weight"].shape) == (1000, 2048)


def test_mobilenet_v2_torchvision_layout():
    net = mobilenet_v2()
    assert sum(p.numel() for p in net.parameters()) == 3_504_872
    sd = net.state_dict()
    assert len(sd) == 314
    assert tuple(sd["features.18.0.weight"].shape) == (1280, 320, 1, 1)
    assert tuple(sd["features.1.conv.1.weight"].shape) == (16, 32, 1, 1)  # t=1: no expand


def test_rnet_resnet50_shapes_zero_head():
    net = RNet(LITE, "resnet50").eval()
    assert sum(p.numel() for p in net.backbone.parameters()) == 23_508_032
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        feats = net.features(x)
        coeffs = net.head(feats["pooled"])
    assert feats["shallow"].shape == (1, 256, 28, 28)
    assert feats["pooled"].shape == (1, 2048)
    assert coeffs.shape == (1, 99)
    assert torch.count_nonzero(coeffs) == 0
    # shallow = layer1 output (56x56) average-pooled 2x2
    with torch.no_grad():
        l1 = net.backbone.layer1(net.backbone.stem(net.normalize(x)))
    assert l1.shape == (1, 256, 56, 56)
    torch.testing.assert_close(feats["shallow"], l1.reshape(1, 256, 28, 2, 28, 2).mean((3, 5)))


def test_rnet_mobilenet_shapes_and_output_layout():
    net = RNet(BFM09_LAYOUT, "mobilenet_v2").eval()
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        feats = net.features(x)
        out = net(x)
    assert feats["shallow"].shape == (2, 32, 28, 28)
    assert feats["pooled"].shape == (2, 1280)
    assert out.shape == (2, 257)
    assert torch.count_nonzero(out) == 0


def test_zero_head_is_mean_face_in_train_mode():
    net = RNet(LITE, "mobilenet_v2", width_mult=0.25).train()
    out = net(torch.rand(3, 3, 96, 96))
    assert out.shape == (3, 99)
    assert torch.count_nonzero(out) == 0
    assert torch.count_nonzero(net.head.weight) == 0 and torch.count_nonzero(net.head.bias) == 0
    out.sum().backward()  # the head still gets gradients
    assert net.head.weight.grad.abs().sum() > 0


def test_mobilenet_imagenet_weights_load_strictly():
    path = mobilenet_v2_imagenet_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = load_mobilenet_v2_imagenet(mobilenet_v2()).eval()
    own = net.state_dict()
    assert set(own) == set(state)
    assert all(torch.equal(own[k], state[k]) for k in state)
    # the weights work: the astronaut photo gets a confident, helmet-like class
    im = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGB)
    im = cv2.resize(im, (224, 224), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        p = net(x).softmax(-1)[0]
    assert p.max() > 0.1  # random init: ~0.001
    top5 = set(p.topk(5).indices.tolist())
    assert top5 & {518, 560}  # crash helmet, football helmet
    # headless backbone in the R-Net: classifier keys skipped, everything else strict
    rnet = RNet(LITE, "mobilenet_v2", pretrained=True)
    torch.testing.assert_close(rnet.backbone.features[0][0].weight, state["features.0.0.weight"])
    assert torch.count_nonzero(rnet.head.weight) == 0


def test_backbone_load_rejects_mismatch():
    path = mobilenet_v2_imagenet_path()
    with pytest.raises(ModelFileError, match="shapes"):
        load_backbone_state(mobilenet_v2(width_mult=0.5), path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    del state["features.3.conv.1.1.bias"]
    with pytest.raises(ModelFileError, match="1 missing"):
        load_backbone_state(mobilenet_v2(), state)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state["features.99.weight"] = torch.zeros(1)
    with pytest.raises(ModelFileError, match="1 unexpected"):
        load_backbone_state(mobilenet_v2(), state)
    with pytest.raises(ModelFileError, match=r"mobilenet_v2 at width 1\.0"):
        RNet(LITE, "resnet50", pretrained=True)


def _random_net(seed: int = 0) -> RNet:
    torch.manual_seed(seed)
    net = RNet(LITE, "mobilenet_v2", width_mult=0.5)
    torch.nn.init.normal_(net.head.weight, std=0.05)
    torch.nn.init.normal_(net.head.bias, std=0.05)
    net.train()
    with torch.no_grad():  # move the BN running statistics away from their defaults
        net(torch.rand(4, 3, 64, 64))
    return net.eval()


def test_save_load_exact_and_fp16_export(tmp_path):
    net = _random_net()
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        ref = net(x)
    assert ref.abs().max() > 0.01
    full = save_rnet(net, tmp_path / "rnet.pt", meta={"step": 7})
    half = export_weights(net, tmp_path / "rnet_fp16.pt")
    a = load_rnet(full)
    assert a.config == net.config and not a.training
    assert all(torch.equal(v, a.state_dict()[k]) for k, v in net.state_dict().items())
    b = load_rnet(half)
    sd = b.state_dict()
    assert sd["head.weight"].dtype == torch.float32
    assert sd["backbone.features.0.1.num_batches_tracked"].dtype == torch.int64
    for k, v in net.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(sd[k], v, rtol=1e-3, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(b(x), ref, rtol=0, atol=2e-3)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    raw = torch.load(half, weights_only=True)
    assert raw["state_dict"]["head.weight"].dtype == torch.float16
    assert raw["config"]["backbone"] == "mobilenet_v2"


def test_training_loss_config_travels_with_the_weights(tmp_path):
    """``auto`` refines with the loss weights the net was trained with (train_config meta)."""
    from facerecon.losses import HybridLossConfig
    from facerecon.train.config import TrainConfig

    net = _random_net()
    cfg = TrainConfig(loss=HybridLossConfig(alpha=5.0, beta=2.4))
    path = export_weights(net, tmp_path / "w.pt", meta={"train_config": cfg.to_dict()})
    loss = training_loss_config(path)
    assert loss == HybridLossConfig(alpha=5.0, beta=2.4)
    assert training_loss_config(save_rnet(net, tmp_path / "plain.pt")) is None


def test_load_rnet_errors(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_rnet(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ModelFileError, match="cannot read"):
        load_rnet(bad)
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not a facerecon R-Net file"):
        load_rnet(tmp_path / "other.pt")


def test_predict_coeffs_batches_and_restores_mode():
    net = _random_net(1).train()
    x = torch.rand(5, 3, 64, 64, dtype=torch.float64)
    out = predict_coeffs(net, x, batch_size=2)
    assert out.shape == (5, 99) and out.dtype == torch.float32
    assert net.training
    net.eval()
    with torch.no_grad():
        ref = net(x.float())
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert predict_coeffs(net, x[:0]).shape == (0, 99)


def test_normalize_is_imagenet():
    net = RNet(LITE, "mobilenet_v2", width_mult=0.25)
    x = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    assert net.normalize(x).abs().max() < 1e-6
    y = net.normalize(torch.ones(1, 3, 2, 2))
    np.testing.assert_allclose(
        y[0, :, 0, 0].numpy(), (1 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD), rtol=1e-6
    )


def test_input_size_resizes_inside_and_travels_with_the_weights(tmp_path):
    """A net trained at a reduced input size runs on 224 crops as it did in training (the
    resize is part of the net), and the size is stored in its file."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    net = RNet(LITE, "mobilenet_v2", width_mult=0.25, input_size=96).eval()
    with torch.no_grad():
        net.head.weight.normal_(0, 1e-2)
    crop = torch.rand(2, 3, 224, 224)
    small = F.interpolate(crop, size=(96, 96), mode="bilinear", antialias=True)
    with torch.no_grad():
        direct, resized = net(crop), net(small)
        feats = net.features(crop)
    torch.testing.assert_close(direct, resized)
    assert feats["shallow"].shape[-1] == 12  # stride 8 of 96, not of 224
    back = load_rnet(export_weights(net, tmp_path / "w.pt"))
    assert back.config.input_size == 96
    with torch.no_grad():
        torch.testing.assert_close(back(crop), direct, atol=2e-3, rtol=2e-2)

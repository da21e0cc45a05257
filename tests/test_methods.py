"""The method registry: one contract for fit, rnet and auto; a new method is a class and a line."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
import torch

from facerecon.errors import FaceReconError
from facerecon.fit import FitConfig, FitTarget, fit
from facerecon.methods import (
    METHODS,
    AutoMethod,
    Estimate,
    FitMethod,
    RNetMethod,
    build_method,
    method_class,
    method_names,
    network_methods,
)


@pytest.fixture(scope="module")
def target(model):
    """Two renders of the model with known pose: crops and their projected landmarks."""
    from facerecon.fit import fitted_landmarks
    from facerecon.render import CameraConfig, render

    torch.manual_seed(0)
    layout = model.layout
    coeffs = layout.zeros(2)
    parts = dict(layout.split(coeffs))
    parts["id_coeff"] = torch.randn(2, layout.n_id)
    parts["angles"] = torch.tensor([[0.05, 0.3, 0.0], [0.0, -0.2, 0.05]])
    with torch.no_grad():
        v, albedo = model(parts["id_coeff"], parts["exp_coeff"], parts["tex_coeff"])
        cam = CameraConfig()
        out = render(v, albedo, model.triangles, parts["angles"], parts["trans"],
                     parts["gamma"], cam)  # fmt: skip
        lm = fitted_landmarks(model, v, parts["angles"], parts["trans"], cam)
    return FitTarget(out.image.clamp(0, 1), lm)


class ZeroMethod:
    """A toy method: the mean face at zero pose for every crop (for the plug-in test)."""

    name: ClassVar[str] = "zero"
    stage: ClassVar[str] = "zeroing"
    uses_rnet: ClassVar[bool] = False
    uses_more_landmarks: ClassVar[bool] = False

    def __init__(self, model):
        self.model = model

    @classmethod
    def from_spec(cls, spec, model):
        return cls(model)

    def __call__(self, target, shared_identity=False):
        return Estimate(self.model.layout.zeros(target.image.shape[0]).to(target.image))


def test_registry_names_classes_and_cli_choices():
    from facerecon.cli import build_parser

    assert method_names() == ["fit", "rnet", "auto", "pgn", "mvfit", "mvr", "mvr-auto"]
    assert method_class("fit") is FitMethod and method_class("auto") is AutoMethod
    assert network_methods() == ("rnet", "auto")
    from facerecon.methods import NETWORK_ONLY  # the CLI's names, for before torch loads

    fitless = tuple(n for n in method_names() if not method_class(n).uses_more_landmarks)
    assert fitless == NETWORK_ONLY
    for name in method_names():
        cls = method_class(name)
        assert cls.name == name and isinstance(cls.stage, str)
    known = "unknown method 'nope'; known: fit, rnet, auto, pgn, mvfit"
    with pytest.raises(FaceReconError, match=known):
        method_class("nope")
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    method = next(a for a in sub.choices["reconstruct"]._actions if a.dest == "method")
    assert list(method.choices) == method_names()


def test_fit_method_is_the_fit_and_leaves_the_rng_alone(model, target):
    cfg = FitConfig.fast()
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    est = FitMethod(model, cfg)(target)
    assert torch.equal(torch.rand(3), expected_draw)  # fit() no longer reseeds the caller
    ref = fit(model, target, cfg).coeffs
    assert est.coeffs.shape == (2, model.layout.size) and est.confidences is None
    assert torch.equal(est.coeffs, ref)
    assert [h["stage"] for h in est.history] == ["landmarks", "landmarks", "coarse", "fine"]
    shared = FitMethod(model, cfg)(target, shared_identity=True).coeffs
    ids = model.layout.split(shared)["id_coeff"]
    assert torch.equal(ids[0], ids[1]) and not torch.equal(shared, est.coeffs)


def test_rnet_and_auto_share_the_network_estimate(model, target):
    from facerecon.aggregate import aggregate_set
    from facerecon.nets.cnet import CNet, predict_set
    from facerecon.nets.rnet import RNet, predict_coeffs

    torch.manual_seed(1)
    net = RNet(model.layout, "mobilenet_v2", width_mult=0.25, input_size=64)
    with torch.no_grad():
        net.head.bias[: model.layout.n_id].normal_(0, 1.0)
    cnet = CNet.for_rnet(net)
    with torch.no_grad():
        cnet.fc2.bias.normal_(0, 1.0)  # confidences that differ per coefficient
    plain = RNetMethod(model, net)(target)
    assert torch.equal(plain.coeffs, predict_coeffs(net, target.image))
    avg = RNetMethod(model, net)(target, shared_identity=True).coeffs
    ids = model.layout.split(avg)["id_coeff"]
    assert torch.allclose(ids[0], model.layout.split(plain.coeffs)["id_coeff"].mean(0))
    est = RNetMethod(model, net, cnet, "s4")(target, shared_identity=True)
    coeffs, conf = predict_set(net, cnet, target.image)
    assert torch.equal(est.coeffs, aggregate_set(coeffs, conf, model.layout, "s4"))
    assert est.confidences.shape == (2,) and torch.allclose(est.confidences, conf.sum(-1))
    refine = FitConfig.fast()
    auto = AutoMethod(RNetMethod(model, net, cnet), FitMethod(model, refine))(target, True)
    ref = fit(model, target, _shared(refine), init=est.coeffs).coeffs
    assert torch.equal(auto.coeffs, ref) and torch.equal(auto.confidences, est.confidences)


def _shared(cfg: FitConfig) -> FitConfig:
    import dataclasses

    return dataclasses.replace(cfg, shared_identity=True)


def test_build_method_from_spec_checks_weights(model, tmp_path):
    from facerecon.methods import MethodSpec

    with pytest.raises(FaceReconError, match="--method rnet needs R-Net weights"):
        build_method("rnet", MethodSpec(), model)
    with pytest.raises(FaceReconError, match="--cnet needs R-Net features"):
        build_method("fit", MethodSpec(cnet=tmp_path / "c.pt"), model)
    m = build_method("fit", MethodSpec(fast=True), model)
    assert isinstance(m, FitMethod) and m.facerec is None


def test_a_new_method_is_a_class_and_a_registry_line(tmp_path, faces_68pt, monkeypatch):
    """Registering a class makes it a ``--method`` choice that ``reconstruct`` runs end to end."""
    from facerecon.cli import main
    from facerecon.io import load_coefficients

    monkeypatch.setitem(METHODS, "zero", f"{__name__}:ZeroMethod")
    out = tmp_path / "out"
    code = main(["reconstruct", str(faces_68pt / "takeo.ppm"), "--method", "zero",
                 "--out", str(out), "--no-report", "--quiet"])  # fmt: skip
    assert code == 0
    arrays, meta = load_coefficients(out / "takeo.npz")
    assert meta["method"] == "zero" and float(abs(arrays["coeffs"]).max()) == 0.0
    assert json.loads((out / "summary.json").read_text())["written"][0]["name"] == "takeo"

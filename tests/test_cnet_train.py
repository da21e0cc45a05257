"""C-Net training: the set objective teaches low confidence for occluded images; train_cnet runs,
logs, saves and resumes; command line."""

from __future__ import annotations

import csv

import pytest
import torch

from facerecon.aggregate import image_confidence
from facerecon.losses import hybrid_loss
from facerecon.nets.cnet import CNet, load_cnet, rnet_outputs
from facerecon.nets.rnet import RNet, save_rnet
from facerecon.render import CameraConfig, project, render, transform
from facerecon.train.cnet import (
    CNetTrainConfig,
    ImageSetDataset,
    build_cnet_parser,
    cnet_config_from_args,
    main_train_cnet,
    set_stage_loss,
    set_terms,
    train_cnet,
)
from facerecon.train.config import ConfigError

SIZE = 32  # image and render side (landmarks stay in 224-crop pixels)
M = 3  # images per set


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _frozen_rnet(layout, calib: torch.Tensor) -> RNet:
    """Tiny MobileNetV2 R-Net with random weights, BatchNorm statistics of ``calib``, frozen."""
    torch.manual_seed(0)
    net = RNet(layout, backbone="mobilenet_v2", width_mult=0.25, input_size=SIZE)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batch
    with torch.no_grad():
        net.train()(calib)
    return net.eval().requires_grad_(False)


def _occluded_sets(model, n_sets: int, seed: int):
    """Sets of M renders of one identity (own expression, pose, light, background); one image
    per set gets a large striped occluder over the face, and its "R-Net" identity is off by
    N(0, 1.5^2) per coefficient (what a single-image regressor does on an occluded face); the
    clean images' identities are off by N(0, 0.1^2).

    Returns images (S, M, 3, SIZE, SIZE), lm68 (S, M, 68, 2), coeffs (S, M, size), occ (S,).
    """
    g = torch.Generator().manual_seed(seed)
    lay, sl = model.layout, model.layout.slices()
    n = n_sets * M
    c = lay.zeros(n)
    c[:, sl["id_coeff"]] = (0.8 * torch.randn(n_sets, lay.n_id, generator=g)).repeat_interleave(
        M, 0
    )
    c[:, sl["tex_coeff"]] = (0.5 * torch.randn(n_sets, lay.n_tex, generator=g)).repeat_interleave(
        M, 0
    )
    c[:, sl["exp_coeff"]] = 0.5 * torch.randn(n, lay.n_exp, generator=g)
    c[:, sl["angles"]] = 0.25 * torch.randn(n, 3, generator=g)
    c[:, sl["gamma"]] = 0.1 * torch.randn(n, 27, generator=g)
    p = lay.split(c)
    cam = CameraConfig()
    with torch.no_grad():
        v, a = model(p["id_coeff"], p["exp_coeff"], p["tex_coeff"])
        out = render(v, a, model.triangles, p["angles"], p["trans"], p["gamma"], cam.scaled(SIZE))
        lm, _ = project(transform(v[:, model.landmarks68], p["angles"], p["trans"], cam), cam)
    bg = 0.2 + 0.5 * torch.rand(n, 3, 1, 1, generator=g)
    img = (out.image.clamp(0, 1) * out.mask + bg * (1 - out.mask)).view(n_sets, M, 3, SIZE, SIZE)
    coeffs = c.view(n_sets, M, -1).clone()
    coeffs[..., sl["id_coeff"]] += 0.1 * torch.randn(n_sets, M, lay.n_id, generator=g)
    occ = torch.randint(0, M, (n_sets,), generator=g)
    h, w = int(0.45 * SIZE), int(0.55 * SIZE)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    stripes = (((yy + xx) // 2) % 2).float()
    for s in range(n_sets):
        i = int(occ[s])
        y0 = int(torch.randint(int(0.25 * SIZE), int(0.40 * SIZE), (1,), generator=g))
        x0 = int(torch.randint(int(0.15 * SIZE), int(0.30 * SIZE), (1,), generator=g))
        c1, c2 = torch.rand(3, 1, 1, generator=g), torch.rand(3, 1, 1, generator=g)
        img[s, i, :, y0 : y0 + h, x0 : x0 + w] = c1 * stripes + c2 * (1 - stripes)
        coeffs[s, i, sl["id_coeff"]] += 1.5 * torch.randn(lay.n_id, generator=g)
    return img, lm.view(n_sets, M, 68, 2), coeffs, occ


def test_set_objective_lowers_confidence_of_occluded_images(model):
    """40 Adam steps (lr 3e-4, 8 sets of 3 per step, s4, set-stage weights) on 48 training sets;
    measured on 32 held-out sets (other identities, poses, occluders)."""
    tr_img, tr_lm, tr_coeffs, _ = _occluded_sets(model, 48, seed=0)
    va_img, _, _, va_occ = _occluded_sets(model, 32, seed=1)
    rnet = _frozen_rnet(model.layout, tr_img.flatten(0, 1))
    with torch.no_grad():
        _, f_tr = rnet_outputs(rnet, tr_img.flatten(0, 1))
        _, f_va = rnet_outputs(rnet, va_img.flatten(0, 1))
    torch.manual_seed(0)
    cnet = CNet.for_rnet(rnet)
    opt = torch.optim.Adam(cnet.parameters(), lr=3e-4)
    loss_cfg = set_stage_loss()
    att = torch.ones_like(tr_img[:, :, :1])
    shallow = f_tr["shallow"].view(48, M, *f_tr["shallow"].shape[1:])
    pooled = f_tr["pooled"].view(48, M, -1)

    def held_out() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            conf = cnet(f_va["shallow"], f_va["pooled"]).view(32, M, -1)
        occ = torch.zeros(32, M, dtype=torch.bool)
        occ[torch.arange(32), va_occ] = True
        share = (conf / conf.sum(1, keepdim=True)).mean(-1)  # (S, M) weight share under s4
        return image_confidence(conf) / conf.shape[-1], share, occ

    mean0, _, occ = held_out()
    assert torch.allclose(mean0, torch.full_like(mean0, 0.5))  # starts as plain averaging
    losses = []
    for step in range(40):
        j = torch.arange(step * 8, step * 8 + 8) % 48
        conf = cnet(shallow[j].flatten(0, 1), pooled[j].flatten(0, 1)).view(8, M, -1)
        terms = set_terms(
            model, tr_coeffs[j], conf, tr_img[j], tr_lm[j], att[j], "s4", loss_cfg, SIZE
        )
        total, _ = hybrid_loss(terms, loss_cfg)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    mean, share, occ = held_out()
    gap = float(mean[~occ].mean() - mean[occ].mean())
    lowest = float((mean.argmin(1) == va_occ).float().mean())
    print(
        f"held-out: clean {float(mean[~occ].mean()):.3f} occluded {float(mean[occ].mean()):.3f}"
        f" share {float(share[occ].mean()):.3f} lowest {lowest:.2f}"
    )
    assert gap > 0.05  # occluded images get clearly lower confidence than clean ones
    assert float(share[occ].mean()) < 0.25  # their s4 weight falls from 1/3
    assert lowest >= 0.6  # the occluded image is the least trusted one (chance: 1/3)


@pytest.fixture(scope="module")
def rnet_file(tmp_path_factory, model):
    torch.manual_seed(0)
    net = RNet(model.layout, backbone="mobilenet_v2", width_mult=0.25, input_size=64)
    with torch.no_grad():  # a zero head predicts one face for all images: no signal at all
        net.head.weight.normal_(0, 1e-3)
    return save_rnet(net, tmp_path_factory.mktemp("rnet") / "rnet.pt")


def _cfg(out, rnet, **kw) -> CNetTrainConfig:
    base = dict(
        data="synthetic",
        out_dir=str(out),
        rnet=str(rnet),
        set_size=2,
        synthetic_identities=2,
        synthetic_conditions=2,
        synthetic_image_size=128,
        input_size=64,
        render_size=32,
        batch_size=1,
        max_steps=2,
        lr=1e-3,
        val_fraction=0.5,
        val_every=2,
        ckpt_every=1,
        perceptual=False,
        resume="auto",
        progress=False,
    )
    base.update(kw)
    return CNetTrainConfig(**base)


def test_train_cnet_runs_logs_saves_resumes(tmp_path, model, rnet_file):
    cfg = _cfg(tmp_path / "run", rnet_file)
    res = train_cnet(cfg)
    assert res["steps"] == 2 and res["start_step"] == 0 and len(res["losses"]) == 2
    assert all(0 < x < 10 for x in res["losses"]) and res["val"]["loss"] > 0
    with (tmp_path / "run" / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["split"] for r in rows] == ["train", "train", "val"]
    assert float(rows[0]["photo"]) > 0
    cnet = load_cnet(res["weights"])
    assert cnet.n_id == model.layout.n_id
    assert cnet.fc2.weight.abs().sum() > 0  # trained away from the zero init
    res2 = train_cnet(_cfg(tmp_path / "run", rnet_file, max_steps=3))
    assert res2["start_step"] == 2 and res2["steps"] == 3


def test_image_set_dataset_groups_by_person(model):
    from facerecon.data.datasets import SyntheticFaceDataset

    items = SyntheticFaceDataset(model, 2, 3, seed=0, image_size=128)
    sets = ImageSetDataset(items, 2)
    assert sets.sets == [[0, 1], [3, 4]]  # one set per identity, the third view left out
    item = sets[1]
    assert item["image"].shape == (2, 3, 224, 224) and item["lm68"].shape == (2, 68, 2)
    with pytest.raises(Exception, match="no person has 4 images"):
        ImageSetDataset(items, 4)


def test_config_and_command_line(tmp_path, rnet_file, capsys):
    with pytest.raises(ConfigError, match="strategy"):
        CNetTrainConfig(strategy="s3")
    with pytest.raises(ConfigError, match="set_size"):
        CNetTrainConfig(set_size=1)
    cfg = CNetTrainConfig()
    assert (cfg.loss.w_photo, cfg.loss.w_landmark, cfg.loss.w_perceptual) == (1.9, 1.6e-3, 0.1)
    args = build_cnet_parser().parse_args(
        ["--rnet", str(rnet_file), "--set-size", "3", "--strategy", "s2", "--set", "lr=3e-5"]
    )
    cfg = cnet_config_from_args(args)
    assert (cfg.rnet, cfg.set_size, cfg.strategy, cfg.lr) == (str(rnet_file), 3, "s2", 3e-5)
    assert main_train_cnet(["--print-config", "--set-size", "4"]) == 0
    assert "set_size: 4" in capsys.readouterr().out
    assert main_train_cnet(["--out", str(tmp_path / "x"), "--quiet"]) == 1  # no --rnet
    assert "needs trained R-Net weights" in capsys.readouterr().err

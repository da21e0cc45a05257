"""R-Net training: objective, augmentation, data order, loss going down, exact resume, DDP."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facerecon.data.augment import flip_sample, random_similarity, warp_sample
from facerecon.data.datasets import AlignedFaceDataset, PreparedFaceDataset, rendered_faces
from facerecon.data.prepared import write_item
from facerecon.nets.rnet import load_rnet
from facerecon.skin import skin_attention, skin_probability
from facerecon.train import (
    FLIP_68,
    AugmentConfig,
    ConfigError,
    TrainConfig,
    load_config,
    main_train,
    rnet_terms,
    save_config,
    train_rnet,
)
from facerecon.train.cli import build_parser, config_from_args
from facerecon.train.engine import epoch_batches, steps_per_epoch

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def faces(model):
    """4 rendered, aligned faces: crops (4, 224, 224, 3) uint8, lm68 (4, 68, 2)."""
    im, lm, _ = rendered_faces(model, 4, seed=1)
    return im, lm


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, faces):
    """A prepared folder with one person per face."""
    root = tmp_path_factory.mktemp("prepared")
    im, lm = faces
    for i in range(len(im)):
        write_item(root / f"p{i}" / f"face{i}.npz", im[i], lm[i])
    return root


def _tiny(data_dir: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        data=str(data_dir),
        out_dir=str(out),
        backbone="mobilenet_v2",
        width_mult=0.25,
        input_size=64,
        render_size=64,
        batch_size=4,
        max_steps=4,
        lr=1e-4,
        val_fraction=0.0,
        perceptual=False,
        ckpt_every=0,
        resume=None,
        progress=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- objective
def test_objective_prefers_true_coefficients(model):
    im, lm, coeffs = rendered_faces(model, 3, seed=2, align_crops=False)
    image = torch.from_numpy(im).permute(0, 3, 1, 2).float() / 255
    lm68 = torch.from_numpy(lm)
    att = skin_attention(skin_probability(image))
    true = rnet_terms(model, coeffs, image, lm68, att)
    zero = rnet_terms(model, torch.zeros_like(coeffs), image, lm68, att)
    assert set(true) == {"photo", "landmark", "coef", "tex"}
    assert float(true["landmark"]) < 1e-6  # the renders' own landmarks
    assert float(zero["landmark"]) > 100.0
    assert float(true["photo"]) < 0.1 * float(zero["photo"])
    assert float(zero["coef"]) == 0.0 and float(true["coef"]) > 1.0


# ---------------------------------------------------------------- augmentation
def test_flip_permutation_maps_eyes_and_is_involution(faces):
    im, lm = faces
    assert sorted(FLIP_68.tolist()) == list(range(68))
    assert np.array_equal(FLIP_68[FLIP_68], np.arange(68))
    img2, lm2, _ = flip_sample(im[0], lm[0].astype(np.float64))
    # the subject's right eye corner (36) lands where the mirrored left corner (45) was
    np.testing.assert_allclose(lm2[36], [223 - lm[0][45, 0], lm[0][45, 1]], atol=1e-4)
    assert lm2[36, 0] < lm2[45, 0]  # still image-left of the other eye
    img3, lm3, _ = flip_sample(img2, lm2)
    assert np.array_equal(img3, im[0])
    np.testing.assert_allclose(lm3, lm[0], atol=1e-4)


def test_random_similarity_ranges_and_warp_moves_points():
    cfg = AugmentConfig()
    rng = np.random.default_rng(0)
    c = 111.5
    flips, scales, angles, shifts = 0, [], [], []
    for _ in range(300):
        m, flip = random_similarity(rng, cfg, 224)
        flips += flip
        scales.append(np.hypot(m[0, 0], m[1, 0]))
        angles.append(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
        shifts.append(m[:, :2] @ [c, c] + m[:, 2] - c)
    assert min(scales) >= 0.9 and max(scales) <= 1.1 and max(scales) - min(scales) > 0.15
    assert max(np.abs(angles)) <= 10.0 and max(np.abs(angles)) > 8.0
    assert np.abs(shifts).max() <= 10.0 + 1e-9
    assert 110 < flips < 190
    # a white square follows its landmark through a warp
    img = np.zeros((224, 224, 3), np.uint8)
    img[78:83, 58:63] = 255  # centre (60, 80)
    lm = np.tile([[60.0, 80.0]], (68, 1))
    m, _ = random_similarity(np.random.default_rng(3), cfg, 224)
    out, lm2, att = warp_sample(img, lm, m, np.ones((224, 224), np.float32))
    ys, xs = np.nonzero(out[..., 0].astype(float) > 0)
    w = out[ys, xs, 0].astype(float)
    centroid = [np.average(xs, weights=w), np.average(ys, weights=w)]
    np.testing.assert_allclose(centroid, lm2[0], atol=0.3)
    assert att[112, 112] == 1.0 and att.min() == 0.0  # outside the photo: no attention


def test_augmentation_depends_only_on_seed_epoch_index(faces):
    im, lm = faces
    ds = AlignedFaceDataset(im, lm, augment=AugmentConfig(), seed=5)
    a = ds[1]
    b = ds[1]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["lm68"], b["lm68"])
    ds.set_epoch(1)
    c = ds[1]
    assert not torch.equal(a["lm68"], c["lm68"])
    plain = AlignedFaceDataset(im, lm)[1]
    assert plain["image"].shape == (3, 224, 224) and "attention" not in plain
    np.testing.assert_allclose(plain["lm68"].numpy(), lm[1])


def test_epoch_batches_split_ranks():
    n, bs = 10, 2
    r0 = epoch_batches(n, bs, seed=0, epoch=3, rank=0, world_size=2)
    r1 = epoch_batches(n, bs, seed=0, epoch=3, rank=1, world_size=2)
    assert len(r0) == len(r1) == steps_per_epoch(n, bs, 2) == 2
    flat0 = [i for b in r0 for i in b]
    flat1 = [i for b in r1 for i in b]
    assert not set(flat0) & set(flat1)
    assert r0 == epoch_batches(n, bs, seed=0, epoch=3, rank=0, world_size=2)
    assert r0 != epoch_batches(n, bs, seed=0, epoch=4, rank=0, world_size=2)
    assert epoch_batches(3, 8, 0, 0) and len(epoch_batches(3, 8, 0, 0)[0]) == 3


# ---------------------------------------------------------------- config
def test_config_yaml_roundtrip_and_errors(tmp_path):
    cfg = TrainConfig(backbone="mobilenet_v2", lr_milestones=[2.5], augment=AugmentConfig(flip=0))
    path = save_config(cfg, tmp_path / "c.yaml")
    assert load_config(path) == cfg
    assert load_config(path, batch_size=5).batch_size == 5
    assert TrainConfig().lr == 1e-4 and TrainConfig().lr_gamma == 0.2
    (tmp_path / "bad.yaml").write_text("bogus_key: 1\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="amp"):
        TrainConfig(amp="fp8")
    with pytest.raises(ConfigError, match="rasterizer"):
        TrainConfig(rasterizer="opengl")
    args = build_parser().parse_args(
        ["--config", str(path), "--steps", "7", "--set", "augment.rotation=5", "--set", "lr=3e-4"]
    )
    c2 = config_from_args(args)
    assert (c2.max_steps, c2.augment.rotation, c2.lr, c2.augment.flip) == (7, 5.0, 3e-4, 0.0)
    from facerecon.train.cnet import load_cnet_config
    from facerecon.train.mvr import MVRTrainConfig
    from facerecon.train.pgn import PGNTrainConfig

    examples = sorted((REPO / "configs").glob("*.yaml"))
    assert any(p.name.startswith("cnet_") for p in examples)
    assert any(p.name.startswith("mvr_") for p in examples)
    assert any(p.name.startswith("pgn_") for p in examples)
    for example in examples:  # every example config loads with its command's loader
        if example.name.startswith("cnet_"):
            load_cnet_config(example)
        elif example.name.startswith("mvr_"):
            load_config(example, MVRTrainConfig)
        elif example.name.startswith("pgn_"):
            load_config(example, PGNTrainConfig)
        else:
            load_config(example)


# ---------------------------------------------------------------- training
def test_training_reduces_loss_and_logs(data_dir, tmp_path):
    cfg = _tiny(data_dir, tmp_path / "run", max_steps=12, perceptual=True, ckpt_every=6)
    cfg.augment.enabled = False
    res = train_rnet(cfg)
    losses = res["losses"]
    assert len(losses) == 12 and res["steps"] == 12
    assert losses[-1] < 0.5 * losses[0]
    rows = _rows(tmp_path / "run" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    assert float(rows[0]["perceptual"]) > 0 and float(rows[0]["photo"]) > 0
    assert float(rows[-1]["loss"]) == pytest.approx(losses[-1], rel=1e-6)
    assert float(rows[0]["lr"]) == 1e-4
    assert (tmp_path / "run" / "checkpoints" / "step_00000006.pt").is_file()
    net = load_rnet(res["weights"])
    assert net.config.backbone == "mobilenet_v2" and net.layout.size == 99
    from facerecon.nets.rnet import training_loss_config

    assert training_loss_config(res["weights"]) == cfg.loss  # auto refines with these


def test_resume_gives_identical_next_step(data_dir, tmp_path):
    kw = dict(batch_size=2, max_steps=3, ckpt_every=2, lr_milestones=[1.0])  # lr x0.2 at step 2
    full = train_rnet(_tiny(data_dir, tmp_path / "a", **kw))
    ckpt = tmp_path / "a" / "checkpoints" / "step_00000002.pt"
    resumed = train_rnet(_tiny(data_dir, tmp_path / "b", resume=str(ckpt), **kw))
    assert resumed["start_step"] == 2 and len(resumed["losses"]) == 1
    assert resumed["losses"][0] == full["losses"][2]  # bit-identical
    # continuing a run in place ("auto") keeps its metrics and appends
    more = train_rnet(_tiny(data_dir, tmp_path / "a", resume="auto", **{**kw, "max_steps": 4}))
    assert more["start_step"] == 3
    rows = _rows(tmp_path / "a" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[2]["lr"]) == pytest.approx(2e-5)


class _Payload:
    """Unpickling this object opens (creates) ``path``: a stand-in for code in a checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _crafted_checkpoint(path: Path, marker: Path, fmt: str) -> Path:
    payload = {"format": fmt, "step": 1, "rng": _Payload(marker), "model": {}}
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("kind", ["rnet", "cnet"])
def test_crafted_checkpoint_is_refused_and_runs_no_code(kind, data_dir, tmp_path):
    from facerecon.errors import FaceReconError
    from facerecon.train.cnet import load_cnet_checkpoint
    from facerecon.train.rnet import load_checkpoint

    load = {"rnet": load_checkpoint, "cnet": load_cnet_checkpoint}[kind]
    fmt = f"facerecon-{kind}-train-2"
    # the payload is live: an unrestricted load would create the marker
    control = tmp_path / "control"
    live = torch.load(_crafted_checkpoint(tmp_path / "c.pt", control, fmt), weights_only=False)
    live["rng"].close()
    assert control.exists()
    marker = tmp_path / "marker"
    ckpt = _crafted_checkpoint(tmp_path / "evil.pt", marker, fmt)
    with pytest.raises(FaceReconError) as err:
        load(ckpt, torch.nn.Linear(2, 2))
    assert not marker.exists()
    assert "\n" not in str(err.value) and "cannot read checkpoint" in str(err.value)
    if kind == "rnet":  # resuming a run from it fails the same way
        with pytest.raises(FaceReconError, match="cannot read checkpoint"):
            train_rnet(_tiny(data_dir, tmp_path / "r", resume=str(ckpt)))
        assert not marker.exists()


def test_validation_split_by_person(data_dir, tmp_path):
    cfg = _tiny(data_dir, tmp_path / "v", max_steps=2, val_fraction=0.25, val_every=2)
    res = train_rnet(cfg)
    assert res["val"] is not None and res["val"]["loss"] > 0
    rows = _rows(tmp_path / "v" / "metrics.csv")
    assert [r["split"] for r in rows] == ["train", "train", "val"]
    persons = PreparedFaceDataset(data_dir).persons
    assert len(persons) == 4


def test_main_train_cli(data_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["--data", str(data_dir), "--out", str(out), "--backbone", "mobilenet_v2"]
    argv += ["--steps", "1", "--batch-size", "2", "--quiet", "--resume", "none"]
    argv += ["--set", "width_mult=0.25", "--set", "input_size=64", "--set", "render_size=64"]
    argv += ["--set", "perceptual=false", "--set", "val_fraction=0"]
    assert main_train(argv) == 0
    assert "trained steps 0..1" in capsys.readouterr().out
    assert (out / "rnet.pt").is_file() and (out / "config.yaml").is_file()
    assert main_train(["--data", str(tmp_path / "nothing"), "--out", str(out)]) == 1
    assert "error: prepared data folder not found" in capsys.readouterr().err


def test_ddp_two_processes_gloo(data_dir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "facerecon.train.cli", "--data", str(data_dir), "--out", str(out)]
    cmd += ["--backbone", "mobilenet_v2", "--steps", "2", "--batch-size", "1", "--device", "cpu"]
    cmd += ["--quiet", "--resume", "none", "--set", "width_mult=0.25", "--set", "input_size=64"]
    cmd += ["--set", "render_size=64", "--set", "perceptual=false", "--set", "val_fraction=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("trained steps 0..2") == 1  # rank 0 only
    rows = _rows(out / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2]
    net = load_rnet(out / "rnet.pt")
    assert torch.count_nonzero(net.head.weight) > 0  # the head was trained


def test_synthetic_data_aligned_and_trains(model, tmp_path):
    from facerecon.data.datasets import SyntheticFaceDataset
    from facerecon.detect.align import DEFAULT_TEMPLATE_224, fit_scale_translation, five_points
    from facerecon.train.data import build_datasets

    ds = SyntheticFaceDataset(model, 2, 2, seed=0, image_size=160)
    assert len(ds) == 4 and ds.persons == ["0", "0", "1", "1"]
    item = ds[3]
    assert item["image"].shape == (3, 224, 224)
    scale, shift = fit_scale_translation(
        five_points(item["lm68"].double().numpy()), DEFAULT_TEMPLATE_224
    )
    assert abs(scale - 1) < 1e-4 and np.abs(shift).max() < 0.01  # aligned crop
    cfg = _tiny(
        "synthetic",
        tmp_path / "syn",
        synthetic_identities=2,
        synthetic_conditions=2,
        synthetic_image_size=160,
        val_fraction=0.5,
        val_every=2,
        max_steps=2,
        batch_size=2,
    )
    train, val = build_datasets(cfg, model)
    assert set(train.persons) == {"0", "1"} and set(val.persons) == {"2"}
    res = train_rnet(cfg)
    assert res["steps"] == 2 and res["val"]["loss"] > 0
    assert all(np.isfinite(res["losses"]))


def test_skin_attention_switch_for_the_ablation():
    """``skin_attention: false`` (Table-1 ablation) weighs every face pixel 1; the default uses
    the stored attention, or computes it from the image when the item has none."""
    from facerecon.skin import skin_attention, skin_probability
    from facerecon.train.data import prepare_batch as _prepare_batch

    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 32, 32, generator=g)
    stored = torch.rand(2, 1, 32, 32, generator=g)
    batch = {"image": image, "lm68": torch.zeros(2, 68, 2), "attention": stored}
    assert torch.equal(_prepare_batch(batch, torch.device("cpu"))[2], stored)
    off = _prepare_batch(batch, torch.device("cpu"), use_skin_attention=False)[2]
    assert off.shape == (2, 1, 32, 32) and bool((off == 1).all())
    computed = _prepare_batch({**batch, "attention": None}, torch.device("cpu"))[2]
    torch.testing.assert_close(computed, skin_attention(skin_probability(image)))
    assert TrainConfig(skin_attention=False).skin_attention is False

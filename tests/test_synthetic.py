"""Synthetic face engine: determinism, ground-truth consistency, labels, triples, shards, ICT."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facerecon.data.synthetic import (
    FaceSample,
    SynthConfig,
    SyntheticFaces,
    read_shards,
    write_shards,
)
from facerecon.labels import Region
from facerecon.render import CameraConfig, project, transform

SIZE = 128
FOCAL = 1015.0 * SIZE / 224


# One intra-op thread: the generator renders small images; 2 threads on a busy 2-core machine
# were ~10x slower (oversubscription).
pytestmark = pytest.mark.usefixtures("one_torch_thread_module")


def _cfg(**kw) -> SynthConfig:
    base = dict(image_size=SIZE, focal=FOCAL, clean=True, background="procedural")
    base.update(kw)
    return SynthConfig(**base)


@pytest.fixture(scope="module")
def frontal(model) -> FaceSample:
    return SyntheticFaces(model, _cfg(pose="frontal"), seed=3).sample(1, 0)


def test_determinism_and_identity(model):
    gen = SyntheticFaces(model, _cfg(clean=False, background="mixed"), seed=7)
    a, b = gen.sample(2, 5), SyntheticFaces(model, gen.config, seed=7).sample(2, 5)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.vertices_camera, b.vertices_camera)
    assert np.array_equal(a.parse, b.parse)
    c = gen.sample(2, 6)
    assert np.abs(a.image.astype(int) - c.image.astype(int)).mean() > 5.0
    assert np.array_equal(a.vertices_neutral, c.vertices_neutral)
    assert not np.allclose(a.coeffs["angles"], c.coeffs["angles"])
    d = gen.sample(3, 5)
    assert np.abs(a.vertices_neutral - d.vertices_neutral).max() > 1.0  # mm
    other_seed = SyntheticFaces(model, gen.config, seed=8).sample(2, 5)
    assert not np.array_equal(a.vertices_neutral, other_seed.vertices_neutral)
    # identity + expression, and expression 0 gives the neutral mesh
    exp_part = a.vertices_model - a.vertices_neutral
    assert np.abs(exp_part).max() > 0.5
    assert a.image.shape == (SIZE, SIZE, 3) and a.image.dtype == np.uint8
    assert a.triangles.dtype == np.int64 and a.parse.dtype == np.uint8


def test_landmarks_match_camera_and_renderer(frontal: FaceSample):
    s = frontal
    cam = s.camera
    p = s.vertices_camera[s.landmark_indices].astype(np.float64)
    u = cam["center"] + cam["focal"] * p[:, 0] / -p[:, 2]
    v = cam["center"] - cam["focal"] * p[:, 1] / -p[:, 2]
    assert np.abs(s.lm68 - np.stack([u, v], 1)).max() < 1e-3
    assert np.array_equal(s.lm68_3d, s.vertices_model[s.landmark_indices])
    assert s.nose_index == s.landmark_indices[30]
    # the renderer's own transform/projection of the model-space mesh agrees
    scene = transform(
        torch.from_numpy(s.vertices_model)[None].double(),
        torch.from_numpy(s.coeffs["angles"])[None].double(),
        torch.from_numpy(s.coeffs["trans"])[None].double(),
        CameraConfig(**cam),
    )
    uv, _ = project(scene, CameraConfig(**cam))
    assert np.abs(uv[0].numpy()[s.landmark_indices] - s.lm68).max() < 1e-3
    cam_mm = (scene[0].numpy() - [0, 0, cam["cam_dist"]]) * cam["mm_per_unit"]
    assert np.abs(cam_mm - s.vertices_camera).max() < 1e-3
    # a frontal face: nose tip is in front of the camera, about 55 % of the width
    assert s.vertices_camera[s.nose_index, 2] < -800
    width = np.ptp(s.lm68[:17, 0])
    assert 0.3 * SIZE < width < 0.8 * SIZE
    # visible landmarks fall on face pixels (3x3 neighbourhood, parse > 0)
    assert s.landmark_visible.sum() >= 60
    face = s.parse > 0
    for (x, y), vis in zip(np.round(s.lm68).astype(int), s.landmark_visible, strict=True):
        if vis:
            assert face[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2].any()


def test_parse_labels(frontal: FaceSample):
    s = frontal
    counts = np.bincount(s.parse.ravel(), minlength=10)
    assert counts[Region.SKIN] > 0.15 * SIZE * SIZE
    for r in (Region.NOSE, Region.LEFT_EYE, Region.RIGHT_EYE, Region.LEFT_BROW, Region.RIGHT_BROW,
              Region.UPPER_LIP, Region.LOWER_LIP):  # fmt: skip
        assert counts[r] > 5, r
    assert s.parse.max() <= Region.INNER_MOUTH  # OTHER never appears in a parse mask
    cols = np.nonzero(s.parse)[1]
    # subject's left eye appears on the image right; eyes above the mouth
    left = np.nonzero(s.parse == Region.LEFT_EYE)
    right = np.nonzero(s.parse == Region.RIGHT_EYE)
    lips = np.nonzero(s.parse == Region.UPPER_LIP)
    assert left[1].mean() > right[1].mean() + 10
    assert left[0].mean() < lips[0].mean() - 10
    assert cols.min() > 0 and cols.max() < SIZE - 1  # frontal face fully in frame
    # eye labels sit on the eye landmarks
    eye_lm = np.round(s.lm68[42:48].mean(0)).astype(int)
    assert s.parse[eye_lm[1], eye_lm[0]] == Region.LEFT_EYE
    assert not s.occluder_mask.any()


def test_triple_yaws(model):
    gen = SyntheticFaces(model, _cfg(), seed=1)
    yaws = (-45.0, 0.0, 70.0)
    views = gen.triple(4, yaws)
    assert len(views) == 3
    got = [np.rad2deg(v.coeffs["angles"][1]) for v in views]
    assert np.allclose(got, yaws, atol=1e-4)
    for v in views[1:]:
        assert np.array_equal(v.vertices_model, views[0].vertices_model)
        assert np.array_equal(v.coeffs["gamma"], views[0].coeffs["gamma"])
        assert np.allclose(v.coeffs["angles"][[0, 2]], views[0].coeffs["angles"][[0, 2]])
    # positive yaw turns the nose towards the image right of the face centre
    offs = []
    for v in views:
        lm = v.lm68
        offs.append(lm[30, 0] - 0.5 * (lm[0, 0] + lm[16, 0]))
    assert offs[0] < -5 and abs(offs[1]) < 5 and offs[2] > 5
    # identity_set: m conditions of one identity
    ims = gen.identity_set(4, 3)
    assert [s.condition for s in ims] == [0, 1, 2]
    assert all(np.array_equal(s.vertices_neutral, views[0].vertices_neutral) for s in ims)


def test_shards_round_trip(model, tmp_path):
    gen = SyntheticFaces(model, _cfg(clean=False), seed=5)
    out = write_shards(tmp_path / "ds", gen, n_identities=2, m_per_identity=2, shard_size=3)
    assert sorted(p.name for p in out.glob("shard-*.npz")) == ["shard-00000.npz", "shard-00001.npz"]
    card = (out / "README.md").read_text()
    assert "synthetic-faces-v" in card and "research" in card and "seed | 5" in card
    index = json.loads((out / "index.json").read_text())
    assert index["n_samples"] == 4 and index["model"] == "bfm-lite"
    back = list(read_shards(out))
    assert [(s.identity, s.condition) for s in back] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for s in back:
        ref = gen.sample(s.identity, s.condition)
        for key in ("image", "vertices_model", "vertices_neutral", "vertices_camera", "parse",
                    "lm68", "occluder_mask", "triangles", "landmark_visible"):  # fmt: skip
            assert np.array_equal(getattr(s, key), getattr(ref, key)), key
        for k, v in ref.coeffs.items():
            assert np.array_equal(s.coeffs[k], v), k
        assert s.camera == ref.camera and s.nose_index == ref.nose_index
        assert s.model_name == "bfm-lite" and s.seed == 5


def test_ict_model(ict):
    gen = SyntheticFaces(ict, _cfg(pose="frontal"), seed=0)
    samples = gen.identity_set(0, 4)
    exps = np.stack([s.coeffs["exp_coeff"] for s in samples])
    assert exps.shape == (4, 57)
    assert exps.min() >= 0.0 and exps.max() <= 1.0
    assert (exps > 0).sum(1).max() <= 16  # sparse
    s = samples[0]
    assert s.model_name == "ict" and s.vertices_model.shape == (6706, 3)
    counts = np.bincount(s.parse.ravel(), minlength=10)
    # ICT has eye-socket holes: filled as eyeballs with the eye labels
    assert counts[Region.LEFT_EYE] > 5 and counts[Region.RIGHT_EYE] > 5
    assert counts[Region.SKIN] > 0.1 * SIZE * SIZE
    p = s.vertices_camera[s.landmark_indices].astype(np.float64)
    u = s.camera["center"] + s.camera["focal"] * p[:, 0] / -p[:, 2]
    assert np.abs(s.lm68[:, 0] - u).max() < 1e-3


def test_occluders_keep_face_labels(model):
    clean = SyntheticFaces(model, _cfg(pose="frontal"), seed=11)
    cfg = _cfg(
        pose="frontal", clean=False, occluder_prob=1.0, blur_prob=0, noise_prob=0, jpeg_prob=0
    )
    occl = SyntheticFaces(model, cfg, seed=11)
    covered = 0
    for c in range(3):
        a, b = clean.sample(0, c), occl.sample(0, c)
        assert np.array_equal(a.parse, b.parse)  # occluded pixels keep their face label
        assert np.array_equal(a.lm68, b.lm68)
        assert not a.occluder_mask.any()
        on_face = b.occluder_mask & (b.parse > 0)
        covered += on_face.sum()
        diff = np.abs(a.image.astype(int) - b.image.astype(int)).sum(-1)
        assert (diff[b.occluder_mask] > 0).mean() > 0.5
    assert covered > 0.02 * SIZE * SIZE


@pytest.mark.parametrize("kind", ["sunglasses", "hand", "hair", "microphone", "object"])
def test_occluder_kinds(frontal: FaceSample, kind):
    from facerecon.data.occluders import add_occluders

    photo = frontal.image.astype(np.float32) / 255
    rng = np.random.default_rng(0)
    out, occ = add_occluders(rng, photo, frontal.lm68, np.array([0.8, 0.6, 0.5]), (kind,))
    assert out.shape == photo.shape and out.dtype == np.float32
    assert occ.sum() > 20 and (occ & (frontal.parse > 0)).sum() > 10
    assert np.abs(out - photo)[~occ].max() < 0.6  # only anti-aliased edges change outside
    assert np.abs(out - photo).sum(-1)[occ].mean() > 0.02


def test_wide_pose_ranges_and_framing(model):
    gen = SyntheticFaces(model, _cfg(max_yaw_deg=90.0), seed=2)
    angles, widths = [], []
    for s in gen.stream(10):
        angles.append(np.rad2deg(s.coeffs["angles"]))
        assert ((s.lm68 >= 0) & (s.lm68 < SIZE)).all()  # face in frame
        cols = np.nonzero((s.parse > 0).any(0))[0]
        widths.append((cols.max() - cols.min() + 1) / SIZE)
    a = np.array(angles)
    assert (
        np.abs(a[:, 1]).max() <= 90 and np.abs(a[:, 0]).max() <= 40 and np.abs(a[:, 2]).max() <= 30
    )
    assert np.abs(a[:, 1]).max() > 30  # wide mode reaches beyond the frontal range
    assert min(widths) > 0.35 and max(widths) < 0.8
    fr = [
        np.rad2deg(s.coeffs["angles"][1])
        for s in SyntheticFaces(model, _cfg(pose="frontal")).stream(6)
    ]
    assert np.abs(fr).max() <= 30


def test_prepared_layout_for_training(model, tmp_path):
    """Synthetic faces written as a prepare folder: aligned crops whose landmarks are the
    sample's GT landmarks mapped through the stored crop transform; resumable; one person per
    identity, readable by the training dataset."""
    from facerecon.data.datasets import PreparedFaceDataset
    from facerecon.data.prepared import read_item
    from facerecon.data.synthetic_prepared import item_path, write_prepared, write_prepared_card

    gen = SyntheticFaces(model, _cfg(clean=False), seed=4)
    out = tmp_path / "prep"
    assert write_prepared(out, gen, [3, 7], 2) == (4, 0)
    assert write_prepared(out, gen, [3, 7, 8], 2) == (2, 4)  # resumes: only identity 8 is new
    card = json.loads(write_prepared_card(out, gen, 9, 2, "cmd").read_text())
    assert card["seed"] == 4 and card["model"] == "bfm-lite" and card["command"] == "cmd"
    ds = PreparedFaceDataset(out)
    assert len(ds) == 6 and sorted(set(ds.persons)) == ["id_00003", "id_00007", "id_00008"]
    item = read_item(item_path(out, 7, 1))
    assert item["image"].shape == (224, 224, 3) and item["attention"].shape == (224, 224)
    sample = gen.sample(7, 1)
    _, _, scale, tx, ty = item["crop"]
    np.testing.assert_allclose(sample.lm68 * scale + [tx, ty], item["lm68"], atol=1e-3)
    # the face fills the crop as the paper's alignment does: eyes ~ 60 px apart, inside
    lm = item["lm68"]
    assert (lm > 0).all() and (lm < 224).all()
    assert 40 < np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)) < 110
    # the stored attention is the shipped skin classifier's on the crop (fp16)
    from facerecon.skin import skin_attention, skin_probability

    want = skin_attention(skin_probability(item["image"]))
    np.testing.assert_allclose(item["attention"].astype(np.float32), want, atol=1e-3)

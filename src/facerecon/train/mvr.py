"""DF-MVR training: the multi-view network, label-free on view triples (optionally with 3D
landmarks on synthetic data).

The trainer is a step function (:class:`MVRStep`) and a net spec (:data:`MVR`) on the training
engine (:mod:`facerecon.train.engine`): data order, metrics, checkpoints with exact resume,
validation and DDP are the engine's. Data: folders of view triples
(:mod:`facerecon.data.view_triples`, from ``scripts/make_view_triples.py`` or
``facerecon prepare --views``).

Terms (:func:`mvr_terms`), per present view with the shared identity / expression / albedo and
the view's own pose and light, rendered with the view's own rotated normals:

* ``photo``: photometric error weighted by DF-MVR's parse weight map (background 32, face 128,
  facial parts dilated by 20 px 254, of 255) times the rendered front-face mask;
* ``landmark``: the L2 norm (not squared) of the 68 residuals, 20 on the nose ridge, the eyes
  and the inner mouth (jaw points on the silhouette);
* ``mask``: cross-entropy of the render's *soft* parse (``facerecon.render.render_parse``,
  differentiable in the shape) against the photo's parse (from ``mask_from_step`` on);
* ``lm3d``: the 68 3D landmarks after a 7-point similarity alignment, in mm (only items with 3D
  ground truth, i.e. synthetic; ``MVRTrainConfig.lm3d``);
* ``coef``, ``tex``, ``light``: as the R-Net's.

View dropout (``view_dropout``): each item keeps 1, 2 or 3 of its views (probabilities
``keep_probs``), so the net learns to work from any subset. The release trains on exactly 3.

Run layout (``config.out_dir``)::

    config.yaml, metrics.csv, checkpoints/last.pt, checkpoints/step_N.pt
    mvr.pt                final weights (``facerecon.nets.mvr.load_mvr``)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

from facerecon.errors import FaceReconError
from facerecon.fit.core import fitted_landmarks, front_pixels, landmark_vertices
from facerecon.labels import NUM_PARSE_CLASSES
from facerecon.losses import (
    HybridLossConfig,
    albedo_flatness_loss,
    coefficient_regularization,
    hybrid_loss,
    landmark3d_loss,
    landmark_norm_loss,
    lighting_regularization,
    parse_loss,
    photometric_loss,
)
from facerecon.morphable import MorphableModel
from facerecon.nets.mvr import MVRConfig, MVRNet, save_mvr
from facerecon.render import CameraConfig, render, render_parse
from facerecon.train.cli import TRAIN_FLAGS, TrainCommand, run_command
from facerecon.train.config import ConfigError, TrainConfig
from facerecon.train.engine import NetSpec, RunParts, train

__all__ = [
    "MVR",
    "MVR_COMMAND",
    "MVRStep",
    "MVRTrainConfig",
    "dfmvr_loss",
    "drop_views",
    "lm3d_indices",
    "main_train_mvr",
    "mvr_terms",
    "parse_weight_map",
    "train_mvr",
]


def dfmvr_loss() -> HybridLossConfig:
    """DF-MVR's loss weights as released: landmarks 2e-2 (L2 norm), photometric 24, parse mask
    1, 3D landmarks 1, coefficients 3e-4, reflectance 5, lighting 10, no perceptual term."""
    return HybridLossConfig(
        w_photo=24.0,
        w_landmark=2e-2,
        w_perceptual=0.0,
        w_coef=3e-4,
        w_tex=5.0,
        w_light=10.0,
        extra={"mask": 1.0, "lm3d": 1.0},
    )


@dataclass
class MVRTrainConfig(TrainConfig):
    """A :class:`facerecon.train.TrainConfig` plus DF-MVR's fields.

    Attributes:
        net_size: ``"cpu"`` (:meth:`MVRConfig.cpu`) or ``"paper"`` (:meth:`MVRConfig.paper`).
        view_dropout: probability that an item loses views (then it keeps 1 or 2 of them).
        keep_probs: relative probabilities of keeping 1 and 2 views when it does.
        lm3d: use the 3D-landmark term on items that carry 3D landmarks (synthetic).
        lm3d_points: 68 (the 3D landmarks, as the release's keypoints) or more: the 68 plus
            ``lm3d_points - 68`` front-face vertices spread evenly, their truth computed from
            the synthetic item's coefficients (only when it carries them, in the same model).
        mask_from_step: first step with the parse-mask term (the release: epoch 100 of 280).
    """

    data: str = "runs/triples"
    out_dir: str = "runs/mvr"
    batch_size: int = 4
    perceptual: bool = False
    lr_milestones: list[float] = field(default_factory=lambda: [0.7])
    lr_gamma: float = 0.1
    loss: HybridLossConfig = field(default_factory=dfmvr_loss)
    net_size: Literal["cpu", "paper"] = "cpu"
    view_dropout: float = 0.5
    keep_probs: tuple[float, float] = (0.4, 0.6)
    lm3d: bool = True
    lm3d_points: int = 68
    mask_from_step: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.net_size not in ("cpu", "paper"):
            raise ConfigError(f"net_size must be 'cpu' or 'paper', got {self.net_size!r}")
        if not 0.0 <= self.view_dropout <= 1.0:
            raise ConfigError(f"view_dropout must be in [0, 1], got {self.view_dropout}")
        self.keep_probs = tuple(float(x) for x in self.keep_probs)

    def net_config(self, model: MorphableModel) -> MVRConfig:
        c = MVRConfig.cpu if self.net_size == "cpu" else MVRConfig.paper
        cfg = c(model.layout)
        cfg.input_size = self.input_size if self.net_size == "paper" else cfg.input_size
        return cfg


def drop_views(
    present: torch.Tensor, p_drop: float, keep_probs=(0.4, 0.6), generator=None
) -> torch.Tensor:
    """Random view dropout: each row of ``present (B, V)`` loses views with probability
    ``p_drop``, keeping 1 or 2 (relative probabilities ``keep_probs``) of its present ones.

    Returns:
        ``(B, V)`` bool with at least one view per row that had one.
    """
    out = present.clone()
    b, _v = present.shape
    for i in range(b):
        idx = torch.nonzero(present[i]).flatten()
        if len(idx) < 2 or float(torch.rand((), generator=generator)) >= p_drop:
            continue
        probs = torch.tensor(keep_probs[: len(idx) - 1], dtype=torch.float)
        k = 1 + int(torch.multinomial(probs, 1, generator=generator))
        keep = idx[torch.randperm(len(idx), generator=generator)[:k]]
        out[i] = False
        out[i, keep] = True
    return out


def parse_weight_map(
    parse: torch.Tensor, size: int, dilation: int = 20, values=(32.0, 128.0, 254.0)
) -> torch.Tensor:
    """DF-MVR's photometric weight map at ``size``: ``(N, 1, size, size)`` in 0..1 from parse
    labels ``(N, S, S)`` (facial parts dilated by ``dilation`` px at 224; torch version of
    :func:`facerecon.detect.parsing.dfmvr_weight_map`, every view gets its part weights)."""
    from facerecon.labels import FEATURE_REGIONS

    lab = parse.long()
    if lab.shape[-1] != size:
        lab = F.interpolate(lab[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
    feat = torch.zeros_like(lab, dtype=torch.float)
    for r in FEATURE_REGIONS:
        feat = torch.maximum(feat, (lab == int(r)).float())
    k = max(1, round(dilation * size / 224))
    if k > 1:
        feat = F.max_pool2d(feat[:, None], k, stride=1, padding=k // 2)[:, 0]
        feat = feat[..., :size, :size]
    out = torch.full_like(feat, values[0])
    out = torch.where(lab != 0, torch.full_like(out, values[1]), out)
    out = torch.where(feat > 0, torch.full_like(out, values[2]), out)
    return (out / 255.0)[:, None]


def lm3d_indices(model: MorphableModel, n: int) -> torch.Tensor:
    """``(n,)`` vertex indices of the 3D-landmark term: the 68 landmarks, then ``n - 68``
    front-face vertices evenly spread over the front region (a fixed stride)."""
    lm = model.landmarks68.long()
    if n <= 68:
        return lm[:n]
    front = torch.nonzero(model.front_mask).flatten()
    front = front[~torch.isin(front, lm)]
    pick = front[torch.linspace(0, len(front) - 1, n - 68).round().long()]
    return torch.cat([lm, pick.to(lm)])


def mvr_terms(
    model: MorphableModel,
    coeffs: torch.Tensor,
    present: torch.Tensor,
    image: torch.Tensor,
    lm68: torch.Tensor,
    parse: torch.Tensor,
    lm68_3d: torch.Tensor | None = None,
    loss: HybridLossConfig | None = None,
    points_3d: torch.Tensor | None = None,
    camera: CameraConfig | None = None,
    render_size: int = 224,
    use_mask: bool = True,
    rasterizer: str = "torch",
) -> dict[str, torch.Tensor]:
    """Unweighted DF-MVR terms (module docstring) of multi-view coefficients.

    Args:
        coeffs: ``(B, V, layout.size)`` (identity / expression / albedo equal across views).
        present: ``(B, V)`` bool, the views that exist.
        image: ``(B, V, 3, S, S)`` aligned crops 0..1; lm68: ``(B, V, 68, 2)`` crop pixels;
            parse: ``(B, V, S, S)`` labels.
        lm68_3d: ``(B, K, 3)`` mm model-space 3D points, NaN rows for items without them, or
            None (no ``lm3d`` term).
        points_3d: ``(K,)`` vertex indices of those points (default: the 68 landmarks).
        loss: weights (:func:`dfmvr_loss` when None): ``alpha``/``beta``/``delta`` and whether
            the lighting term is needed.
        camera: crop camera (the paper's when None); render_size: side of the renders.
        use_mask: compute the parse-mask term.

    Returns:
        name -> scalar: photo, landmark, coef, tex, light (if weighted), mask, lm3d.
    """
    w = loss or dfmvr_loss()
    camera = camera or CameraConfig()
    parts = model.layout.split(coeffs[present])  # (N, ...) per present view
    first = model.layout.split(coeffs[:, 0])  # the shared face of each item
    face_v, face_a = model(first["id_coeff"], first["exp_coeff"], first["tex_coeff"])
    item = torch.nonzero(present)[:, 0]  # the item of each present view
    vertices, albedo = face_v[item], face_a[item]
    img, lm, par = image[present], lm68[present], parse[present]
    terms: dict[str, torch.Tensor] = {}
    cam = camera.scaled(render_size) if render_size != camera.size else camera
    out = render(vertices, albedo, model.triangles, parts["angles"], parts["trans"],
                 parts["gamma"], cam, backend=rasterizer)  # fmt: skip
    face = front_pixels(model, out.face_idx).unsqueeze(1).to(out.image.dtype)
    photo_img = (
        img
        if img.shape[-1] == render_size
        else F.interpolate(img, size=(render_size, render_size), mode="area")
    )
    weight = parse_weight_map(par, render_size).to(out.image)
    terms["photo"] = photometric_loss(photo_img, out.image, weight * face)
    pred_lm = fitted_landmarks(model, vertices, parts["angles"], parts["trans"], camera)
    terms["landmark"] = landmark_norm_loss(pred_lm, lm)
    terms["coef"] = coefficient_regularization(
        first["id_coeff"], first["exp_coeff"], first["tex_coeff"],
        alpha=w.alpha, beta=w.beta, delta=w.delta,
    )  # fmt: skip
    terms["tex"] = albedo_flatness_loss(albedo, model.skin_mask)
    if w.w_light:
        terms["light"] = lighting_regularization(parts["gamma"])
    if use_mask and w.extra.get("mask", 0.0):
        probs = render_parse(vertices, model.triangles, model.vertex_labels, parts["angles"],
                             parts["trans"], NUM_PARSE_CLASSES, cam, backend=rasterizer,
                             fragments=out.fragments)  # fmt: skip
        lab = par.long()
        if lab.shape[-1] != render_size:
            lab = F.interpolate(lab[:, None].float(), size=(render_size,) * 2, mode="nearest")
            lab = lab[:, 0].long()
        terms["mask"] = parse_loss(probs, lab)
    if lm68_3d is not None and w.extra.get("lm3d", 0.0):
        has = torch.isfinite(lm68_3d).all(dim=-1).all(dim=-1)
        if bool(has.any()):
            pts = landmark_vertices(
                model, first["id_coeff"][has], first["exp_coeff"][has], points_3d
            )
            terms["lm3d"] = landmark3d_loss(pts, lm68_3d[has])
        else:
            terms["lm3d"] = coeffs.sum() * 0.0
    return terms


class MVRStep:
    """The engine's step: view dropout, the net's multi-view coefficients, the DF-MVR loss.

    Args:
        cfg: the run; model: face model; device: where batches go.
    """

    def __init__(self, cfg: MVRTrainConfig, model: MorphableModel, device: torch.device) -> None:
        self.cfg, self.model, self.device = cfg, model, device
        self.calls = 0
        self.points = lm3d_indices(model, cfg.lm3d_points)

    def __call__(
        self, net: torch.nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, dev = self.cfg, self.device
        present = batch["present"].to(dev)
        if net.training:
            present = drop_views(present.cpu(), cfg.view_dropout, cfg.keep_probs).to(dev)
            self.calls += 1
        image = batch["image"].to(dev)
        parse = batch["parse"].to(dev)
        lm68 = batch["lm68"].to(dev)
        lm3d = None
        if cfg.lm3d and "lm68_3d" in batch:
            lm3d = batch["lm68_3d"].to(dev).clone()
            lm3d[~batch["has_3d"].to(dev).bool()] = float("nan")
            if cfg.lm3d_points > 68:
                lm3d = self._dense_truth(batch, lm3d)
        coeffs = net(image, parse, present)
        terms = mvr_terms(
            self.model,
            coeffs.float(),
            present,
            image,
            lm68,
            parse,
            lm3d,
            cfg.loss,
            self.points if cfg.lm3d_points > 68 else None,
            render_size=cfg.render_size,
            use_mask=self.calls >= cfg.mask_from_step or not net.training,
            rasterizer=cfg.rasterizer,
        )
        return hybrid_loss(terms, cfg.loss)

    def _dense_truth(self, batch: dict[str, Any], lm3d: torch.Tensor) -> torch.Tensor:
        """``(B, lm3d_points, 3)`` truth at :func:`lm3d_indices` from the items' coefficients
        (NaN rows for items without coefficients of this model)."""
        model, dev = self.model, self.device
        ids, exps = batch.get("id_coeff"), batch.get("exp_coeff")
        b = lm3d.shape[0]
        out = torch.full((b, len(self.points), 3), float("nan"), device=dev, dtype=lm3d.dtype)
        if (
            ids is None
            or ids.shape[-1] != model.layout.n_id
            or exps.shape[-1] != model.layout.n_exp
        ):
            return out
        has = torch.isfinite(lm3d).all(-1).all(-1)
        with torch.no_grad():
            pts = landmark_vertices(model, ids.to(dev).to(lm3d), exps.to(dev).to(lm3d), self.points)
        out[has] = pts[has]
        return out


def _split(cfg: MVRTrainConfig):
    from facerecon.data.view_triples import ViewTripleDataset

    full = ViewTripleDataset(cfg.data)
    if cfg.val_data is not None:
        return full, ViewTripleDataset(cfg.val_data)
    n_val = round(cfg.val_fraction * len(full)) if cfg.val_fraction else 0
    n_val = min(n_val, len(full) - 1)
    if n_val <= 0:
        return full, None
    files = full.files
    return (
        ViewTripleDataset(cfg.data, files[: len(files) - n_val]),
        ViewTripleDataset(cfg.data, files[len(files) - n_val :]),
    )


def _prepare(cfg: MVRTrainConfig, model: MorphableModel, device: torch.device) -> RunParts:
    train_set, val_set = _split(cfg)
    return RunParts(
        train_set,
        val_set,
        build_net=lambda: MVRNet(cfg.net_config(model)),
        build_step=lambda: MVRStep(cfg, model, device),
        weights_meta={"face_model": cfg.face_model, "train_config": cfg.to_dict()},
    )


#: DF-MVR training: ``mvr.pt`` (``facerecon.nets.mvr.save_mvr``), checkpoints
#: ``facerecon-mvr-train-2``.
MVR = NetSpec("mvr", "a DF-MVR net", save_mvr, _prepare, run_name="DF-MVR training")


def train_mvr(config: MVRTrainConfig) -> dict[str, Any]:
    """Train a DF-MVR net (:func:`facerecon.train.engine.train`'s files and result keys)."""
    if not isinstance(config, MVRTrainConfig):
        raise FaceReconError("train_mvr needs an MVRTrainConfig")
    return train(config, MVR)


def _mvr_flags(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--net-size", dest="net_size", choices=("cpu", "paper"))
    ap.add_argument("--view-dropout", dest="view_dropout", type=float)
    ap.add_argument("--no-lm3d", dest="lm3d", action="store_false", default=None,
                    help="no 3D-landmark term (as for real triples)")  # fmt: skip


#: ``facerecon train mvr``: ``facerecon train``'s flags plus ``--net-size``,
#: ``--view-dropout`` and ``--no-lm3d``.
MVR_COMMAND = TrainCommand(
    prog="facerecon train mvr",
    description="Train the DF-MVR multi-view network on view triples "
    "(scripts/make_view_triples.py or facerecon prepare --views).",
    config_type=MVRTrainConfig,
    flags=(*(f for f in TRAIN_FLAGS if f != "backbone"), "net_size", "view_dropout", "lm3d"),
    train=train_mvr,
    trained="trained DF-MVR",
    add_flags=_mvr_flags,
)


def main_train_mvr(argv: Sequence[str] | None = None) -> int:
    """``facerecon train mvr``: parse, train, print a one-line summary; the exit code."""
    return run_command(MVR_COMMAND, argv)


if __name__ == "__main__":
    sys.exit(main_train_mvr())

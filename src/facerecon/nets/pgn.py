"""PGN: pose-guided coefficient regression (pose from predicted 3D landmarks).

The paper's abstract says pose is the bottleneck of coefficient regression and obtains it from
predicted 3D face landmarks instead of regressing it; no code was released, so the design here
is ours:

* **Backbone**: the R-Net's (:class:`facerecon.nets.rnet.RNet`: MobileNetV2 or ResNet-50,
  ImageNet-normalised input at ``input_size``, global average pooling).
* **Shape head**: one linear layer to ``[id_coeff | exp_coeff | tex_coeff | gamma]`` (every
  coefficient but the pose), zero-initialised (the mean face, ambient light).
* **Landmark head**: one linear layer to 68 x ``(u, v, depth)`` offsets from a template (the
  mean face's landmarks seen frontally in the crop camera, a persistent buffer): ``u, v`` in
  crop pixels of the 224 crop (OpenCV convention) and ``depth`` towards the camera on the
  same pixel scale (a scaled-orthographic 3D landmark set, as 3DDFA / PRNet predict them). The
  image position is what a CNN localises well; the depth carries the out-of-plane rotation.
* **Pose**: closed form and differentiable, :func:`facerecon.render.pose_from_landmarks`:
  weighted similarity Procrustes between the model's 68 landmark vertices *under the predicted
  identity and expression* and the predicted 3D landmarks, read as a perspective pose (angles,
  translation) with two perspective-correction rounds. The pose is therefore always consistent
  with the predicted shape and landmarks; the loss on the rendered face trains the landmark
  head through the Procrustes, and where 3D landmark labels exist (synthetic data) they train
  it directly (:mod:`facerecon.train.pgn`).

:func:`from_rnet` starts a PGN from a trained R-Net (backbone and the shape rows of its head).
Files: ``{"format": "facerecon-pgn-1", "config", "state_dict", "meta"}`` (:func:`save_pgn`,
fp16 :func:`export_pgn`, :func:`load_pgn`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from facerecon.nets.rnet import RNet, RNetConfig
from facerecon.nets.weights_file import load_weights, save_weights, unwrap
from facerecon.render import CameraConfig, pose_from_landmarks, project, transform

if TYPE_CHECKING:
    from facerecon.morphable import MorphableModel

__all__ = [
    "PGNConfig",
    "PGNet",
    "export_pgn",
    "flip_landmarks",
    "from_rnet",
    "landmark_template",
    "load_pgn",
    "pgn_coeffs",
    "predict_pgn",
    "procrustes_weights",
    "save_pgn",
]

FILE_FORMAT = "facerecon-pgn-1"
N_LIGHT = 27


@dataclass
class PGNConfig(RNetConfig):
    """What rebuilds a :class:`PGNet` (stored with its weights): the fields of
    :class:`facerecon.nets.rnet.RNetConfig` (layout sizes, backbone, width, input size), with
    MobileNetV2 as the default backbone."""

    backbone: str = "mobilenet_v2"

    @property
    def n_shape(self) -> int:
        """Outputs of the shape head: identity, expression, albedo and the 27 SH terms."""
        return self.n_id + self.n_exp + self.n_tex + N_LIGHT


class PGNet(nn.Module):
    """Shape coefficients and 3D landmarks from an aligned crop.

    Shapes: ``image (B, 3, H, W)`` RGB in 0..1 -> ``{"shape": (B, n_shape), "lm3d":
    (B, 68, 3)}`` (``lm3d``: ``(u, v, depth)`` in 224-crop pixels, see the module docstring).
    """

    def __init__(self, config: PGNConfig, pretrained: bool = False) -> None:
        super().__init__()
        self.config = config
        self.layout = config.layout
        # the R-Net's backbone and input normalisation (one code path for both nets)
        self.trunk = RNet(
            config.layout, config.backbone, config.width_mult, pretrained, config.input_size
        )
        del self.trunk.head
        c = self.trunk.backbone.out_channels
        self.shape_head = nn.Linear(c, config.n_shape)
        self.lm_head = nn.Linear(c, 68 * 3)
        for head in (self.shape_head, self.lm_head):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.register_buffer("template", torch.zeros(68, 3))

    @property
    def pooled_channels(self) -> int:
        return self.trunk.backbone.out_channels

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        feat = self.trunk.backbone(self.trunk.normalize(image))
        lm = self.lm_head(feat).view(-1, 68, 3) + self.template.to(feat.dtype)
        return {"shape": self.shape_head(feat), "lm3d": lm}


def landmark_template(model: MorphableModel, camera: CameraConfig | None = None) -> Tensor:
    """``(68, 3)`` the mean face's landmarks at zero pose in the crop camera as ``(u, v,
    depth)`` pixels (depth relative to their mean, towards the camera)."""
    camera = camera or CameraConfig()
    with torch.no_grad():
        pts = model.mean_shape[model.landmarks68][None].float()
        zero = pts.new_zeros(1, 3)
        scene = transform(pts, zero, zero, camera)
        uv, depth = project(scene, camera)
        z = scene[..., 2]
        d = (z - z.mean(1, keepdim=True)) * camera.focal / depth.mean(1, keepdim=True)
    return torch.cat([uv, d[..., None]], dim=-1)[0].cpu()


def procrustes_weights(device=None, dtype=torch.float32) -> Tensor:
    """``(68,)`` point weights of the pose Procrustes: 0.5 on the jaw outline (0-16, whose
    model vertices slide along the cheek with yaw), 1 elsewhere."""
    w = torch.ones(68, device=device, dtype=dtype)
    w[:17] = 0.5
    return w


def pgn_coeffs(
    model: MorphableModel,
    out: dict[str, Tensor],
    camera: CameraConfig | None = None,
    perspective_iters: int = 2,
    id_coeff: Tensor | None = None,
) -> Tensor:
    """Full coefficient vectors ``(B, layout.size)`` of a PGN's outputs: the shape head's
    coefficients and the pose of :func:`facerecon.render.pose_from_landmarks` between the
    model's landmark vertices (under that identity and expression) and ``out["lm3d"]``.

    Args:
        model: the face model of the coefficient layout.
        out: :meth:`PGNet.forward`'s dict.
        camera: the crop camera (paper's when None).
        perspective_iters: see :func:`facerecon.render.pose_from_landmarks`.
        id_coeff: ``(B, n_id)`` identity to use instead of the predicted one (an image set's
            or a clip's shared identity: the pose is then solved for that shape).
    """
    lay = model.layout
    shape = out["shape"]
    ids, exps, texs, gamma = shape.split([lay.n_id, lay.n_exp, lay.n_tex, N_LIGHT], dim=-1)
    if id_coeff is not None:
        ids = id_coeff.to(shape)
    lm_mm = model.shape_at(ids.to(model.id_basis), exps.to(model.id_basis)).to(shape)
    w = procrustes_weights(shape.device, shape.dtype)
    angles, trans, _ = pose_from_landmarks(
        lm_mm, out["lm3d"].to(shape), camera, w, perspective_iters
    )
    parts = {"id_coeff": ids, "exp_coeff": exps, "tex_coeff": texs}
    parts.update(angles=angles, gamma=gamma, trans=trans)
    return lay.join(parts)


def flip_landmarks(lm3d: Tensor, width: int) -> Tensor:
    """``lm3d (B, 68, 3)`` predicted on horizontally mirrored crops, mapped back to the
    unmirrored crops (``width``: the crop camera's, whatever size the images were given at):
    ``u -> width - 1 - u`` (pixel column ``c`` -> ``width - 1 - c``) and the points re-indexed
    by :data:`facerecon.labels.FLIP_68`; ``v`` and depth are unchanged."""
    from facerecon.labels import FLIP_68

    out = lm3d.clone()
    out[..., 0] = (width - 1) - out[..., 0]
    return out[:, torch.as_tensor(FLIP_68, device=lm3d.device)]


@torch.no_grad()
def predict_pgn(
    net: nn.Module, model: MorphableModel, images: Tensor, batch_size: int = 32, flip: bool = False
) -> tuple[Tensor, Tensor]:
    """Coefficients ``(B, layout.size)`` and landmarks ``(B, 68, 3)`` of aligned crops
    (eval mode, no gradients, on the images' device and dtype).

    With ``flip``, each crop is also predicted mirrored and its landmarks are the mean of the two
    predictions (:func:`flip_landmarks`), the pose then solved from them; the shape coefficients
    stay the unmirrored crop's (a model's coefficients have no mirror image in general). Twice
    the network time; on two synthetic clips turning +-60 degrees (BENCHMARKS.md "Accuracy:
    video") it lowers the shipped PGN's median rotation error from 2.4 to 2.2 degrees per frame
    (the first-stage weights: 3.2 to 2.6) and its smoothed jitter a little (rotation 0.449 to
    0.443 degrees, position 0.63 to 0.60 mm; the first-stage weights: 0.60 to 0.55 degrees):
    part of the error is a yaw-dependent bias that a mirrored view sees with the opposite sign.
    """
    pgn = unwrap(net, PGNet)
    was = pgn.training
    pgn.eval()
    p = next(pgn.parameters())
    coeffs, lms = [], []
    try:
        for chunk in images.split(max(1, batch_size)):
            x = chunk.to(device=p.device, dtype=p.dtype)
            out = {k: v.float() for k, v in pgn(x).items()}
            if flip:
                mirrored = pgn(x.flip(-1))["lm3d"].float()
                out["lm3d"] = 0.5 * (out["lm3d"] + flip_landmarks(mirrored, CameraConfig().size))
            coeffs.append(pgn_coeffs(model, out))
            lms.append(out["lm3d"])
    finally:
        pgn.train(was)
    if not coeffs:
        return images.new_zeros(0, model.layout.size), images.new_zeros(0, 68, 3)
    return (
        torch.cat(coeffs).to(images.device, images.dtype),
        torch.cat(lms).to(images.device, images.dtype),
    )


def from_rnet(rnet: RNet, model: MorphableModel | None = None) -> PGNet:
    """A PGN with ``rnet``'s backbone and the shape rows of its head (identity, expression,
    albedo, lighting); the landmark head starts at the template (``model``'s mean landmarks,
    zero when None)."""
    rc = rnet.config
    net = PGNet(PGNConfig(rc.n_id, rc.n_exp, rc.n_tex, rc.backbone, rc.width_mult, rc.input_size))
    net.trunk.backbone.load_state_dict(rnet.backbone.state_dict())
    sl = rnet.layout.slices()
    rows = torch.cat(
        [
            torch.arange(sl[k].start, sl[k].stop)
            for k in ("id_coeff", "exp_coeff", "tex_coeff", "gamma")
        ]
    )
    with torch.no_grad():
        net.shape_head.weight.copy_(rnet.head.weight[rows])
        net.shape_head.bias.copy_(rnet.head.bias[rows])
        if model is not None:
            net.template.copy_(landmark_template(model))
    return net


def save_pgn(net: nn.Module, path, meta: dict[str, Any] | None = None):
    """Save a :class:`PGNet` (float32 as held) with its :class:`PGNConfig` and ``meta``."""
    return save_weights(net, PGNet, path, FILE_FORMAT, None, meta)


def export_pgn(net: nn.Module, path, meta: dict[str, Any] | None = None):
    """Half-precision copy for distribution (:func:`load_pgn` upcasts)."""
    return save_weights(net, PGNet, path, FILE_FORMAT, torch.float16, meta)


def load_pgn(path, device=None, dtype: torch.dtype = torch.float32) -> PGNet:
    """Rebuild a :class:`PGNet` (eval mode); one-line ``ModelFileError`` when unusable."""
    return load_weights(
        path, FILE_FORMAT, "PGN", lambda c: PGNet(PGNConfig.from_dict(c)), device, dtype
    )

"""DF-MVR (Zhao et al.): multi-view deep fusion of up to three face views into one 3DMM estimate.

Network (``MVRNet``):

* Input per view slot (left, front, right): the aligned crop as RGB in [-1, 1] and its face
  parse (``facerecon.labels.Region`` labels, given to the net one-hot, or as one scaled label
  channel as the release does: ``MVRConfig.parse_input``).
* **MulEn-Unet**: one U-Net encoder per slot, not shared (double 3x3 conv + BN + ReLU, widths
  64-128-256-512-1024 times ``width_mult``, max-pool between levels); the three bottlenecks
  are concatenated into one decoder (transposed-conv upsampling). At every level each slot's
  skip passes its own additive attention gate (:class:`AttentionGate`, gated by the decoder's
  upsampled feature) and the level concatenates the upsampled feature with the gated skips.
  The output is a 256-channel map at the input size.
* **Regressor**: RedNet (:class:`facerecon.nets.involution.RedNet`, involution instead of 3x3
  convs) on that map, then shared heads (identity, expression, albedo) and per-slot heads
  (rotation 3, translation xy 2 and z 1, SH lighting 27).

Differences from the release, on purpose:

* Fewer than three views: a slot without a view gets a zero input and its encoder features
  (every skip and the bottleneck) are multiplied by 0, so the decoder sees exactly "no view";
  training drops views at random (``facerecon.train.mvr``), so 1, 2 or 3 views all work. The
  release requires exactly three.
* Lighting per view (27 SH per slot) and shading with each view's own rotated normals; the
  release shades every view with one view's rotation.
* Heads are zero-initialised (as the R-Net's): an untrained net predicts the mean face,
  ambient light and frontal pose.

``forward(image (B, V, 3, S, S) in 0..1, parse (B, V, S, S) labels, present (B, V) bool)``
returns ``(B, V, layout.size)`` full coefficient vectors (``[id | exp | tex | angles | gamma |
trans]``); the identity, expression and albedo parts are equal across a row's views.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facerecon.labels import NUM_PARSE_CLASSES
from facerecon.morphable.layout import CoeffLayout
from facerecon.nets.involution import RedNet
from facerecon.nets.weights_file import load_weights, save_weights

__all__ = [
    "SLOT_YAWS",
    "AttentionGate",
    "DoubleConv",
    "MVRConfig",
    "MVRNet",
    "MulEnUnet",
    "export_mvr",
    "load_mvr",
    "save_mvr",
    "slot_order",
]

#: nominal yaw (degrees) of the view slots: left, front, right
SLOT_YAWS = (-45.0, 0.0, 45.0)
FILE_FORMAT = "facerecon-mvr-1"


class DoubleConv(nn.Sequential):
    """``(conv 3x3 -> BN -> ReLU) x 2``: ``(B, cin, H, W) -> (B, cout, H, W)``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al., Attention U-Net):
    ``x * sigmoid(BN(conv1x1(relu(BN(conv1x1 g) + BN(conv1x1 x)))))``.

    ``forward(g (B, cg, H, W), x (B, cx, H, W)) -> (B, cx, H, W)``; ``g`` is the gating signal
    (the decoder's upsampled feature), ``x`` the skip feature it weighs per pixel.
    """

    def __init__(self, cg: int, cx: int, inter: int) -> None:
        super().__init__()
        self.w_g = nn.Sequential(nn.Conv2d(cg, inter, 1), nn.BatchNorm2d(inter))
        self.w_x = nn.Sequential(nn.Conv2d(cx, inter, 1), nn.BatchNorm2d(inter))
        self.psi = nn.Sequential(nn.Conv2d(inter, 1, 1), nn.BatchNorm2d(1))

    def coefficients(self, g: Tensor, x: Tensor) -> Tensor:
        """The gate ``(B, 1, H, W)`` in (0, 1)."""
        return torch.sigmoid(self.psi(F.relu(self.w_g(g) + self.w_x(x))))

    def forward(self, g: Tensor, x: Tensor) -> Tensor:
        return x * self.coefficients(g, x)


class _Encoder(nn.Module):
    """U-Net encoder: the feature of every level, finest first."""

    def __init__(self, cin: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        chans = (cin, *widths)
        self.levels = nn.ModuleList(DoubleConv(a, b) for a, b in itertools.pairwise(chans))

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for i, level in enumerate(self.levels):
            x = level(x if i == 0 else F.max_pool2d(x, 2))
            out.append(x)
        return out


class MulEnUnet(nn.Module):
    """Unshared per-view encoders, one decoder with gated skips (see the module docstring).

    Args:
        n_views: slots ``V``.
        in_channels: channels per view (RGB + parse).
        widths: encoder widths per level (paper: 64, 128, 256, 512, 1024).
        out_channels: channels of the output map (256).

    ``forward(x (B, V, in_channels, S, S), present (B, V)) -> (B, out_channels, S, S)``;
    ``S`` divisible by ``2 ** (len(widths) - 1)``.
    """

    def __init__(
        self,
        n_views: int = 3,
        in_channels: int = 4,
        widths: tuple[int, ...] = (64, 128, 256, 512, 1024),
        out_channels: int = 256,
    ) -> None:
        super().__init__()
        self.n_views = n_views
        self.encoders = nn.ModuleList(_Encoder(in_channels, widths) for _ in range(n_views))
        self.ups = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.fuse = nn.ModuleList()
        cin = widths[-1] * n_views
        for w in reversed(widths[:-1]):
            self.ups.append(nn.ConvTranspose2d(cin, w, 2, stride=2))
            self.gates.append(
                nn.ModuleList(AttentionGate(w, w, max(w // 2, 1)) for _ in range(n_views))
            )
            self.fuse.append(DoubleConv(w * (n_views + 1), w))
            cin = w
        self.head = nn.Conv2d(cin, out_channels, 1)
        self.divisor = 2 ** (len(widths) - 1)

    def forward(self, x: Tensor, present: Tensor) -> Tensor:
        b, v = x.shape[:2]
        if v != self.n_views:
            raise ValueError(f"expected {self.n_views} view slots, got {v}")
        if x.shape[-1] % self.divisor or x.shape[-2] % self.divisor:
            raise ValueError(f"input side must be a multiple of {self.divisor}")
        keep = present.to(x.dtype).view(b, v, 1, 1, 1)
        feats = [
            [f * keep[:, i] for f in enc(x[:, i])] for i, enc in enumerate(self.encoders)
        ]  # [view][level]
        y = torch.cat([f[-1] for f in feats], dim=1)
        n_levels = len(feats[0])
        for j, (up, gates, fuse) in enumerate(zip(self.ups, self.gates, self.fuse, strict=False)):
            level = n_levels - 2 - j
            y = up(y)
            skips = [gate(y, feats[i][level]) for i, gate in enumerate(gates)]
            y = fuse(torch.cat([y, *skips], dim=1))
        return self.head(y)


@dataclass
class MVRConfig:
    """What rebuilds an :class:`MVRNet` (stored with its weights).

    Attributes:
        n_id, n_exp, n_tex: the face model's basis sizes (coefficient layout).
        n_views: view slots (3: left, front, right).
        width_mult: MulEn-Unet widths ``(64, 128, 256, 512, 1024) * width_mult``.
        fused_channels: channels of the fused map the regressor reads (256 in the paper).
        rednet_depths: RedNet stage depths (RedNet-50: ``(3, 4, 6, 3)``).
        rednet_width: RedNet width multiplier.
        input_size: side the net sees (224 = paper); crops are resized to it.
        parse_input: ``"onehot"`` (``NUM_PARSE_CLASSES`` channels) or ``"label"`` (one channel,
            label / 9 scaled to [-1, 1], as the release).
    """

    n_id: int = 80
    n_exp: int = 64
    n_tex: int = 80
    n_views: int = 3
    width_mult: float = 1.0
    fused_channels: int = 256
    rednet_depths: tuple[int, ...] = (3, 4, 6, 3)
    rednet_width: float = 1.0
    input_size: int = 224
    parse_input: str = "onehot"

    @property
    def layout(self) -> CoeffLayout:
        return CoeffLayout(self.n_id, self.n_exp, self.n_tex)

    @property
    def parse_channels(self) -> int:
        return NUM_PARSE_CLASSES if self.parse_input == "onehot" else 1

    @classmethod
    def paper(cls, layout: CoeffLayout) -> MVRConfig:
        """Paper size (GPU): U-Net 64..1024, 256 fused channels, RedNet-50, 224 input."""
        return cls(layout.n_id, layout.n_exp, layout.n_tex)

    @classmethod
    def cpu(cls, layout: CoeffLayout) -> MVRConfig:
        """A size that trains on two CPU cores in under an hour: U-Net 8..128, 32 fused
        channels, RedNet (1, 1, 1, 1) at 1/4 width, 112 input."""
        return cls(
            layout.n_id,
            layout.n_exp,
            layout.n_tex,
            width_mult=0.125,
            fused_channels=32,
            rednet_depths=(1, 1, 1, 1),
            rednet_width=0.25,
            input_size=112,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rednet_depths"] = list(self.rednet_depths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MVRConfig:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "rednet_depths" in kw:
            kw["rednet_depths"] = tuple(int(x) for x in kw["rednet_depths"])
        return cls(**kw)


class MVRNet(nn.Module):
    """DF-MVR: MulEn-Unet + RedNet regressor + shared / per-view heads (module docstring).

    Args:
        config: :class:`MVRConfig`.
    """

    def __init__(self, config: MVRConfig) -> None:
        super().__init__()
        if config.parse_input not in ("onehot", "label"):
            raise ValueError(f"parse_input must be 'onehot' or 'label', not {config.parse_input!r}")
        self.config = config
        widths = tuple(max(4, round(w * config.width_mult)) for w in (64, 128, 256, 512, 1024))
        self.unet = MulEnUnet(
            config.n_views, 3 + config.parse_channels, widths, config.fused_channels
        )
        self.regressor = RedNet(config.fused_channels, config.rednet_depths, config.rednet_width)
        layout = config.layout
        feat = self.regressor.out_channels
        self.shared_head = nn.Linear(feat, layout.n_id + layout.n_exp + layout.n_tex)
        self.view_head = nn.Linear(feat, config.n_views * (3 + 27 + 3))
        for head in (self.shared_head, self.view_head):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    @property
    def layout(self) -> CoeffLayout:
        return self.config.layout

    def inputs(self, image: Tensor, parse: Tensor) -> Tensor:
        """Net input ``(B, V, 3 + P, s, s)`` from ``image (B, V, 3, S, S)`` in 0..1 and
        ``parse (B, V, S, S)`` labels (resized to ``input_size``; labels by nearest)."""
        b, v = image.shape[:2]
        s = self.config.input_size
        img = image.flatten(0, 1)
        lab = parse.flatten(0, 1).long()
        if img.shape[-1] != s:
            img = F.interpolate(img, size=(s, s), mode="bilinear", antialias=True,
                                align_corners=False)  # fmt: skip
            lab = F.interpolate(lab[:, None].float(), size=(s, s), mode="nearest")[:, 0].long()
        if self.config.parse_input == "onehot":
            p = F.one_hot(lab.clamp(0, NUM_PARSE_CLASSES - 1), NUM_PARSE_CLASSES)
            p = p.permute(0, 3, 1, 2).to(img.dtype)
        else:
            p = (lab.to(img.dtype) / (NUM_PARSE_CLASSES - 1) * 2 - 1)[:, None]
        x = torch.cat([img * 2 - 1, p], dim=1)
        return x.view(b, v, *x.shape[1:])

    def features(self, image: Tensor, parse: Tensor, present: Tensor | None = None) -> Tensor:
        """Pooled regressor features ``(B, D)``."""
        b, v = image.shape[:2]
        if present is None:
            present = torch.ones(b, v, dtype=torch.bool, device=image.device)
        x = self.inputs(image, parse) * present.to(image.dtype).view(b, v, 1, 1, 1)
        return self.regressor(self.unet(x, present))

    def forward(self, image: Tensor, parse: Tensor, present: Tensor | None = None) -> Tensor:
        """``(B, V, layout.size)`` coefficients per view slot (rows of absent slots are
        computed but meaningless)."""
        b, v = image.shape[:2]
        f = self.features(image, parse, present)
        layout = self.layout
        shared = self.shared_head(f)
        per_view = self.view_head(f).view(b, v, 33)
        parts = {
            "id_coeff": shared[:, : layout.n_id],
            "exp_coeff": shared[:, layout.n_id : layout.n_id + layout.n_exp],
            "tex_coeff": shared[:, layout.n_id + layout.n_exp :],
        }
        parts = {k: t[:, None].expand(b, v, t.shape[-1]) for k, t in parts.items()}
        parts["angles"] = per_view[..., :3]
        parts["gamma"] = per_view[..., 3:30]
        parts["trans"] = per_view[..., 30:33]
        return layout.join(parts)


def save_mvr(net: nn.Module, path, meta: dict[str, Any] | None = None):
    """Save an :class:`MVRNet` (float32 as held) with its :class:`MVRConfig` and ``meta``."""
    return save_weights(net, MVRNet, path, FILE_FORMAT, None, meta)


def export_mvr(net: nn.Module, path, meta: dict[str, Any] | None = None):
    """Half-precision copy for distribution (:func:`load_mvr` upcasts)."""
    return save_weights(net, MVRNet, path, FILE_FORMAT, torch.float16, meta)


def load_mvr(path, device=None, dtype: torch.dtype = torch.float32) -> MVRNet:
    """Rebuild an :class:`MVRNet` from :func:`save_mvr` / :func:`export_mvr` output (eval
    mode); a one-line ``ModelFileError`` when the file is missing or not DF-MVR weights."""
    return load_weights(
        path, FILE_FORMAT, "DF-MVR", lambda c: MVRNet(MVRConfig.from_dict(c)), device, dtype
    )


def slot_order(yaws_deg, n_slots: int = 3, slot_yaws=SLOT_YAWS) -> list[int]:
    """Which slot each of up to ``n_slots`` views goes to: the assignment of views to slots
    (``slot_yaws``: left, front, right) that minimises the summed squared yaw difference and
    keeps the views' left-to-right order (views are order-free for the caller).

    Args:
        yaws_deg: estimated yaw of each view (degrees, positive = the subject turned to its
            left, as ``angles[1]``).

    Returns:
        ``slots[i]`` for view ``i`` (distinct).
    """
    import itertools

    yaws = [float(y) for y in yaws_deg]
    if not 1 <= len(yaws) <= n_slots:
        raise ValueError(f"need 1 to {n_slots} views, got {len(yaws)}")
    best, best_cost = None, float("inf")
    for slots in itertools.permutations(range(n_slots), len(yaws)):
        order_ok = all(
            (slots[i] < slots[j]) == (yaws[i] < yaws[j])
            for i in range(len(yaws))
            for j in range(len(yaws))
            if yaws[i] != yaws[j]
        )
        if not order_ok:
            continue
        cost = sum((slot_yaws[s] - y) ** 2 for s, y in zip(slots, yaws, strict=False))
        if cost < best_cost:
            best, best_cost = list(slots), cost
    assert best is not None
    return best

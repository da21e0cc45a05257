"""R-Net inference timing on CPU: ms per face at batch 1 (forward only, eval mode, no grad).

Both backbones at 224 x 224 with the BFM09 head (257 outputs; the head size does not matter for
speed), plus one batched row per backbone. Values are the median wall time over several runs
after warm-up; notes carry the thread count and load average, because the 2 shared cores are
often busy with other work. Paper anchor: 20 ms per forward on a TITAN Xp GPU (batch 1).
A training-step row (forward + hybrid loss + backward, MobileNetV2, batch 4, render 112) shows
where time goes when training on CPU.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import torch

from facerecon.morphable.layout import BFM09_LAYOUT
from facerecon.nets.rnet import RNet

SECTION = "rnet"


def _median_ms(fn: Callable[[], object], runs: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def _note(extra: str = "") -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{torch.get_num_threads()} threads, load {load:.1f}{'; ' + extra if extra else ''}"


def _forward_rows(quick: bool) -> list[dict]:
    rows = []
    runs = 3 if quick else 10
    for backbone in ("resnet50", "mobilenet_v2"):
        torch.manual_seed(0)
        net = RNet(BFM09_LAYOUT, backbone).eval()
        for batch in (1,) if quick else (1, 8):
            x = torch.rand(batch, 3, 224, 224)

            def fwd(net=net, x=x):
                with torch.inference_mode():
                    return net(x)

            ms = _median_ms(fwd, runs) / batch
            params = sum(p.numel() for p in net.parameters()) / 1e6
            rows.append(
                {
                    "section": SECTION,
                    "name": f"{backbone} forward, batch {batch}",
                    "value": ms,
                    "unit": "ms/face",
                    "notes": _note(f"{params:.1f} M params"),
                }
            )
    return rows


def _train_step_row(quick: bool) -> list[dict]:
    from facerecon.data.datasets import rendered_faces
    from facerecon.losses import HybridLossConfig, hybrid_loss
    from facerecon.morphable import load_face_model
    from facerecon.skin import skin_attention, skin_probability
    from facerecon.train.objective import rnet_terms

    model = load_face_model("bfm-lite")
    im, lm, _ = rendered_faces(model, 4, seed=0)
    image = torch.from_numpy(im).permute(0, 3, 1, 2).float() / 255
    lm68 = torch.from_numpy(lm)
    att = skin_attention(skin_probability(image))
    net = RNet(model.layout, "mobilenet_v2").train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    cfg = HybridLossConfig()

    def step():
        terms = rnet_terms(model, net(image), image, lm68, att, render_size=112)
        total, _ = hybrid_loss(terms, cfg)
        opt.zero_grad()
        total.backward()
        opt.step()

    ms = _median_ms(step, 2 if quick else 5)
    return [
        {
            "section": SECTION,
            "name": "train step mobilenet_v2, batch 4, render 112",
            "value": ms / 4,
            "unit": "ms/face",
            "notes": _note("forward + loss (no perceptual) + backward + Adam"),
        }
    ]


def run(quick: bool = False) -> list[dict]:
    """Rows ``{"section", "name", "value", "unit", "notes"}``."""
    return _forward_rows(quick) + _train_step_row(quick)


if __name__ == "__main__":
    for r in run(quick=True):
        print(f"{r['name']:<48} {r['value']:9.1f} {r['unit']:<8} {r['notes']}")

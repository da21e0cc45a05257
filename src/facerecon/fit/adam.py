"""Adam for the fits: ``torch.optim.Adam``'s update, without ``torch.optim``'s first-use cost.

The first ``torch.optim`` optimizer a process builds or steps imports ``torch._dynamo``
(its methods are wrapped to stay out of ``torch.compile``): 1.2 s of CPU on the 2-core
machine of BENCHMARKS.md, a quarter of a one-photo ``--method fit`` run. A fit's optimiser
is a handful of small coefficient tensors, so it is written out here: the same arithmetic as
``torch.optim.Adam``'s single-tensor path with its defaults (betas 0.9 / 0.999, eps 1e-8, no
weight decay, no AMSGrad); ``tests/test_fit.py`` checks the two agree step by step. Training
(:mod:`facerecon.train`) keeps ``torch.optim``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["Adam"]


class Adam:
    """Adam over parameter groups, each ``{"params": [tensor, ...], "lr": float}``.

    ``param_groups`` is a list of such dicts (a schedule sets ``group["lr"]`` between steps,
    as with ``torch.optim``); :meth:`zero_grad` drops the gradients, :meth:`step` applies one
    update to every parameter that has one. Device and dtype follow the parameters.
    """

    def __init__(
        self,
        groups: list[dict[str, Any]],
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.param_groups = [dict(g, params=list(g["params"])) for g in groups]
        self.betas = betas
        self.eps = eps
        self.state: dict[int, tuple[int, torch.Tensor, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (or zero it with ``set_to_none=False``)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of each parameter with a gradient:
        ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
        ``p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``."""
        b1, b2 = self.betas
        for group in self.param_groups:
            lr = group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                t, m, v = self.state.get(id(p)) or (
                    0,
                    torch.zeros_like(p, memory_format=torch.preserve_format),
                    torch.zeros_like(p, memory_format=torch.preserve_format),
                )
                t += 1
                g = p.grad
                m.lerp_(g, 1.0 - b1)
                v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
                denom = (v.sqrt() / math.sqrt(1.0 - b2**t)).add_(self.eps)
                p.addcdiv_(m, denom, value=-lr / (1.0 - b1**t))
                self.state[id(p)] = (t, m, v)

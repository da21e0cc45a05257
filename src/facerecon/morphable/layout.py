"""The coefficient vector: the one place that defines its layout.

A full coefficient vector is ``[id | exp | tex | angles(3) | gamma(27) | trans(3)]``.
For the paper's BFM09 model that is 80 + 64 + 80 + 3 + 27 + 3 = 257 values:

=========  ===========  =====
part       slice        size
=========  ===========  =====
id_coeff   0:80         80
exp_coeff  80:144       64
tex_coeff  144:224      80
angles     224:227      3   (x, y, z rotation in radians; R = Rz @ Ry @ Rx)
gamma      227:254      27  (SH lighting, RGB x 9, before the +0.8 ambient offset)
trans      254:257      3   (scene units; 1 unit = 100 mm, camera at z = 10)
=========  ===========  =====

Other models only change the three basis sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

N_ANGLES = 3
N_GAMMA = 27
N_TRANS = 3
PART_NAMES = ("id_coeff", "exp_coeff", "tex_coeff", "angles", "gamma", "trans")


@dataclass(frozen=True)
class CoeffLayout:
    """Sizes of the model-dependent parts of the coefficient vector."""

    n_id: int
    n_exp: int
    n_tex: int

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.n_id, self.n_exp, self.n_tex, N_ANGLES, N_GAMMA, N_TRANS)

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for name, n in zip(PART_NAMES, self.sizes, strict=True):
            out[name] = slice(start, start + n)
            start += n
        return out

    def split(self, coeffs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split ``(B, size)`` coefficients into named parts, each ``(B, n)``."""
        if coeffs.shape[-1] != self.size:
            raise ValueError(f"expected {self.size} coefficients, got {coeffs.shape[-1]}")
        return {name: coeffs[..., s] for name, s in self.slices().items()}

    def join(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`split`: concatenate named parts into ``(B, size)``."""
        return torch.cat([parts[name] for name in PART_NAMES], dim=-1)

    def zeros(self, batch: int, **tensor_kw) -> torch.Tensor:
        """The mean face at zero pose, ambient light: ``(B, size)`` zeros."""
        return torch.zeros(batch, self.size, **tensor_kw)


BFM09_LAYOUT = CoeffLayout(80, 64, 80)

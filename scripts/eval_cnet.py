"""What a C-Net's confidences respond to, on held-out synthetic image sets.

    python scripts/eval_cnet.py RNET.pt CNET.pt [N_SETS]

Sets of 5 engine renders (bfm-lite, seed 99, identities 20000+; default engine conditions:
poses, occluders, light, degradations), aligned on their true landmarks. Prints the range of
the per-image confidence (sum of c over the identity coefficients), its spread within a set,
and its rank correlation (within-set centred) with the occluded share of the face and |yaw|.
"""

from __future__ import annotations

import sys

import numpy as np


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.argsort().argsort(), b.argsort().argsort())[0, 1])


def main() -> None:
    from facerecon.data.synthetic import SynthConfig, SyntheticFaces
    from facerecon.detect import align
    from facerecon.methods import RNetMethod, crops_target
    from facerecon.morphable import load_face_model
    from facerecon.nets.cnet import load_cnet
    from facerecon.nets.rnet import load_rnet

    model = load_face_model("bfm-lite")
    method = RNetMethod(model, load_rnet(sys.argv[1]), load_cnet(sys.argv[2]))
    n_sets = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    engine = SyntheticFaces(model, SynthConfig(), seed=99)
    rows = []
    for i in range(n_sets):
        samples = [engine.sample(20000 + i, c) for c in range(5)]
        crops = [align(s.image, s.lm68, size=224) for s in samples]
        conf = method(crops_target(crops, model.mean_shape), shared_identity=True).confidences
        for s, c in zip(samples, conf.numpy(), strict=True):
            face = s.parse > 0
            occluded = (s.occluder_mask & face).sum() / max(int(face.sum()), 1)
            rows.append((i, c, occluded, abs(np.degrees(s.coeffs["angles"][1]))))
    r = np.array(rows)
    centred = r[:, 1].copy()
    for i in np.unique(r[:, 0]):
        centred[r[:, 0] == i] -= centred[r[:, 0] == i].mean()
    occ = r[:, 2] > 0.05
    lo, hi = r[:, 1].min(), r[:, 1].max()
    print(f"confidence {lo:.2f}..{hi:.2f}, within-set std {centred.std():.3f}")
    print(
        f"rank correlation with occluded share {_spearman(centred, r[:, 2]):.3f}, "
        f"with |yaw| {_spearman(centred, r[:, 3]):.3f}"
    )
    print(
        f"within-set confidence: occluded >5 % of the face {centred[occ].mean():.3f} "
        f"(n={int(occ.sum())}), others {centred[~occ].mean():.3f} (n={int((~occ).sum())})"
    )


if __name__ == "__main__":
    main()

"""Render a synthetic training folder in the ``facerecon prepare`` layout (R-Net / C-Net data).

    python scripts/make_training_set.py OUT_DIR [--model bfm-lite] [--identities 2000]
        [--per-identity 5] [--seed 1] [--workers 2] [--max-yaw 60] [--max-pitch 30]
        [--max-roll 20]

One folder per identity (``id_00012/c03.npz``: aligned 224 crop, 68 landmarks, skin attention;
see ``facerecon.data.synthetic_prepared``). Resumable (existing items are skipped); ``--workers``
processes with one torch thread each split the identities. Train on it with
``facerecon train rnet --data OUT_DIR`` (or ``train cnet``, whose image sets are the identities).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shlex
import sys
import time


def _engine(args):
    from facerecon.data.synthetic import SynthConfig, SyntheticFaces
    from facerecon.morphable import load_face_model

    cfg = SynthConfig(
        max_yaw_deg=args.max_yaw, max_pitch_deg=args.max_pitch, max_roll_deg=args.max_roll
    )
    return SyntheticFaces(load_face_model(args.model), cfg, seed=args.seed)


def _work(job) -> tuple[int, int]:
    args, rank = job
    import torch

    from facerecon.data.synthetic_prepared import write_prepared

    torch.set_num_threads(1)
    ids = range(args.first + rank, args.first + args.identities, args.workers)
    return write_prepared(args.out, _engine(args), ids, args.per_identity)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--model", default="bfm-lite")
    ap.add_argument("--identities", type=int, default=2000)
    ap.add_argument("--first", type=int, default=0, help="first identity number")
    ap.add_argument("--per-identity", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-yaw", type=float, default=60.0)
    ap.add_argument("--max-pitch", type=float, default=30.0)
    ap.add_argument("--max-roll", type=float, default=20.0)
    args = ap.parse_args()

    from facerecon.data.synthetic_prepared import write_prepared_card

    command = "python scripts/make_training_set.py " + shlex.join(sys.argv[1:])
    write_prepared_card(args.out, _engine(args), args.identities, args.per_identity, command)
    t = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers) as pool:
        counts = pool.map(_work, [(args, r) for r in range(args.workers)])
    written = sum(c[0] for c in counts)
    skipped = sum(c[1] for c in counts)
    dt = time.perf_counter() - t
    print(f"wrote {written} items ({skipped} existed) to {args.out} in {dt:.0f} s")


if __name__ == "__main__":
    main()

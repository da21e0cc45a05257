"""Render synthetic view triples for multi-view (DF-MVR) training.

    python scripts/make_view_triples.py OUT_DIR [--model bfm-lite] [--triples 1000] [--first 0]
        [--seed 1] [--workers 2] [--spread 20 60] [--jitter 5] [--albedo photo]

One ``t_NNNNNN.npz`` per triple (``facerecon.data.view_triples``: aligned crops, landmarks,
landmark parse maps, yaws, 3D landmarks). Resumable; ``--workers`` processes with one torch
thread each split the triples. Train on it with ``facerecon train mvr --data OUT_DIR``.
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

    cfg = SynthConfig(albedo=args.albedo, max_pitch_deg=20.0, max_roll_deg=15.0)
    return SyntheticFaces(load_face_model(args.model), cfg, seed=args.seed)


def _work(job) -> tuple[int, int]:
    args, rank = job
    import torch

    from facerecon.data.view_triples import write_view_triples

    torch.set_num_threads(1)
    ids = range(args.first + rank, args.first + args.triples, args.workers)
    return write_view_triples(args.out, _engine(args), ids, 224, tuple(args.spread), args.jitter)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--model", default="bfm-lite")
    ap.add_argument("--triples", type=int, default=1000)
    ap.add_argument("--first", type=int, default=0, help="first triple (identity) number")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--spread", type=float, nargs=2, default=(20.0, 60.0))
    ap.add_argument("--jitter", type=float, default=5.0)
    ap.add_argument("--albedo", choices=("model", "photo"), default="photo")
    args = ap.parse_args()

    from facerecon.data.view_triples import write_triples_card

    command = "python scripts/make_view_triples.py " + shlex.join(sys.argv[1:])
    write_triples_card(args.out, _engine(args), args.triples, args.spread, args.jitter, command)
    t = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers) as pool:
        counts = pool.map(_work, [(args, r) for r in range(args.workers)])
    written = sum(c[0] for c in counts)
    skipped = sum(c[1] for c in counts)
    print(
        f"wrote {written} triples ({skipped} existed) to {args.out} in "
        f"{time.perf_counter() - t:.0f} s"
    )


if __name__ == "__main__":
    main()

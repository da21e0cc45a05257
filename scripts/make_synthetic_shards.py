"""Write a synthetic face data set (npz shards + dataset card) with ``facerecon.data.synthetic``.

    python scripts/make_synthetic_shards.py OUT_DIR [--model bfm-lite] [--identities 100]
        [--per-identity 5] [--shard-size 1000] [--seed 0] [--size 256] [--pose wide] [--clean]
    python scripts/make_synthetic_shards.py --bench [--model ...] [--size 256] [--n 20]

``--model`` is a face model name or path (an ICT ``.npz`` works). ``--bench`` only measures
samples per second (default config, realism on) and writes nothing. ``--threads`` (default 1)
sets torch's intra-op threads: on a shared 2-core machine 2 threads were ~10x slower than 1
(oversubscription); run several processes with one thread each for throughput.
"""

from __future__ import annotations

import argparse
import time

import torch

from facerecon.data.synthetic import SynthConfig, SyntheticFaces, write_shards
from facerecon.morphable import load_face_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?")
    ap.add_argument("--model", default="bfm-lite")
    ap.add_argument("--identities", type=int, default=100)
    ap.add_argument("--per-identity", type=int, default=5)
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--pose", default="wide", choices=("wide", "frontal"))
    ap.add_argument("--clean", action="store_true")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: best on busy CPUs)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = SynthConfig(
        image_size=args.size, focal=1015.0 * args.size / 224, pose=args.pose, clean=args.clean
    )
    faces = SyntheticFaces(load_face_model(args.model), cfg, seed=args.seed)
    if args.bench:
        faces.sample(10**6, 0)  # warm-up
        t = time.perf_counter()
        for i in range(args.n):
            faces.sample(i, 0)
        dt = time.perf_counter() - t
        print(
            f"{args.model}: {args.n / dt:.2f} samples/s at {args.size} px "
            f"({1000 * dt / args.n:.0f} ms/sample, torch threads {torch.get_num_threads()})"
        )
        return
    if not args.out:
        ap.error("OUT_DIR is required unless --bench")
    t = time.perf_counter()
    out = write_shards(args.out, faces, args.identities, args.per_identity, args.shard_size)
    n = args.identities * args.per_identity
    print(f"wrote {n} samples to {out} in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()

"""Turn a training checkpoint (R-Net, C-Net, DF-MVR or PGN) into a shippable fp16 weights file.

    python scripts/export_weights.py CHECKPOINT OUT.pt [--note TEXT]

The file records where it came from in its ``meta``: checkpoint step, the training config, the
note (e.g. the data recipe and command). ``facerecon.nets.rnet.load_rnet`` /
``facerecon.nets.cnet.load_cnet`` / ``facerecon.nets.mvr.load_mvr`` /
``facerecon.nets.pgn.load_pgn`` read it (upcast to float32).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def export(checkpoint: Path, out: Path, note: str = "") -> Path:
    from facerecon.nets.cnet import CNet, CNetConfig, export_cnet_weights
    from facerecon.nets.rnet import RNet, RNetConfig, export_weights

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    meta = {"step": int(ckpt["step"]), "train_config": ckpt["train_config"], "note": note}
    if "rnet_config" in ckpt:
        net = RNet.from_config(RNetConfig.from_dict(ckpt["rnet_config"]))
        net.load_state_dict(ckpt["model"], strict=True)
        return export_weights(net, out, meta)
    if "cnet_config" in ckpt:
        net = CNet.from_config(CNetConfig.from_dict(ckpt["cnet_config"]))
        net.load_state_dict(ckpt["model"], strict=True)
        return export_cnet_weights(net, out, meta)
    if "mvr_config" in ckpt:
        from facerecon.nets.mvr import MVRConfig, MVRNet, export_mvr

        net = MVRNet(MVRConfig.from_dict(ckpt["mvr_config"]))
        net.load_state_dict(ckpt["model"], strict=True)
        return export_mvr(net, out, meta)
    if "pgn_config" in ckpt:
        from facerecon.nets.pgn import PGNConfig, PGNet, export_pgn

        net = PGNet(PGNConfig.from_dict(ckpt["pgn_config"]))
        net.load_state_dict(ckpt["model"], strict=True)
        return export_pgn(net, out, meta)
    raise SystemExit(
        f"error: {checkpoint} is not an R-Net, C-Net, DF-MVR or PGN training checkpoint"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--note", default="", help="provenance text stored in the file's meta")
    args = ap.parse_args()
    path = export(args.checkpoint, args.out, args.note)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()

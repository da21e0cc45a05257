"""DF-MVR speed on this CPU (``mvr_speed``): ms per triple of the network alone at the CPU and
the paper size, and one training step.

    python benchmarks/bench_mvr_speed.py

Its own area, apart from the 35-minute multi-view accuracy run (``multiview``), so that it
can be measured on a quiet machine in a few seconds.
"""

from __future__ import annotations

import time

SPEED = "Speed: DF-MVR"


def speed_rows() -> list[dict]:
    import torch

    from facerecon.morphable import load_face_model
    from facerecon.nets.mvr import MVRConfig, MVRNet
    from facerecon.train.mvr import MVRStep, MVRTrainConfig

    model = load_face_model("bfm-lite")
    rows = []
    for size in ("cpu", "paper"):
        cfg = (MVRConfig.cpu if size == "cpu" else MVRConfig.paper)(model.layout)
        net = MVRNet(cfg).eval()
        img = torch.rand(1, 3, 3, 224, 224)
        parse = torch.randint(0, 10, (1, 3, 224, 224))
        reps = 10 if size == "cpu" else 2
        with torch.no_grad():
            net(img, parse)
            t = []
            for _ in range(reps):
                t0 = time.perf_counter()
                net(img, parse)
                t.append(time.perf_counter() - t0)
        n_par = sum(p.numel() for p in net.parameters()) / 1e6
        rows.append({"section": SPEED, "name": f"mvr forward, one triple, {size} size",
                     "value": 1000 * sorted(t)[len(t) // 2], "unit": "ms",
                     "notes": f"{n_par:.1f} M parameters, input {cfg.input_size}; CPU "
                              f"{torch.get_num_threads()} threads; DF-MVR reports 244 ms "
                              "on a GPU (paper size)"})  # fmt: skip
    tcfg = MVRTrainConfig(render_size=112, device="cpu")
    net = MVRNet(tcfg.net_config(model)).train()
    step = MVRStep(tcfg, model, torch.device("cpu"))
    opt = torch.optim.Adam(net.parameters(), 3e-4)
    batch = {
        "image": torch.rand(4, 3, 3, 224, 224),
        "parse": torch.randint(0, 10, (4, 3, 224, 224)),
        "lm68": torch.rand(4, 3, 68, 2) * 224,
        "present": torch.ones(4, 3, dtype=torch.bool),
        "lm68_3d": model.mean_shape[model.landmarks68][None].expand(4, 68, 3).clone(),
        "has_3d": torch.ones(4, dtype=torch.bool),
    }
    t = []
    for _ in range(4):
        t0 = time.perf_counter()
        total, _ = step(net, batch)
        opt.zero_grad()
        total.backward()
        opt.step()
        t.append(time.perf_counter() - t0)
    rows.append({"section": SPEED, "name": "mvr training step, batch 4 triples, cpu size",
                 "value": sorted(t[1:])[1], "unit": "s",
                 "notes": "forward, 12 renders at 112 px, soft parse, backward, Adam"})  # fmt: skip
    return rows


def run(quick: bool = False) -> list[dict]:
    return speed_rows()


def main() -> None:
    for r in run():
        print(f"{r['name']:<60} {r['value']:10.3f} {r['unit']:<8} {r['notes']}")


if __name__ == "__main__":
    main()

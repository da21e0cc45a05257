"""Renderer timing: rasterize + interpolate + SH shading, forward + backward, CPU, 224 x 224.

Meshes: the default face model (``load_face_model()``, bfm-lite) when it loads, and always a
synthetic curved grid of 35,150 vertices / 69,552 triangles (the size of the paper's BFM front
face, ~27,600 covered pixels at 224). The loss is ``image.sum()``; gradients flow to vertices,
albedo and SH coefficients. Values are the median wall time per image over several runs after
warm-up; notes carry the median thread CPU time and the load average, because the 2 shared cores
are often busy with other work (timings are then noisy). Target: < 30 ms per image.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch

from facerecon.render import CameraConfig, project, render, transform
from facerecon.render.rasterizer import _zbuffer

SECTION = "render"


def _grid_mesh(nx: int = 190, ny: int = 185) -> tuple[torch.Tensor, torch.Tensor]:
    """A face-sized (150 x 180 mm) curved sheet, triangles counter-clockwise seen from +z."""
    xs = torch.linspace(-75, 75, nx)
    ys = torch.linspace(-95, 85, ny)
    Y, X = torch.meshgrid(ys, xs, indexing="ij")
    Z = 60 * torch.cos(X / 75 * 1.2) * torch.cos(Y / 95 * 0.9) - 30
    v = torch.stack([X, Y, Z], -1).reshape(-1, 3)
    i = (torch.arange(ny - 1)[:, None] * nx + torch.arange(nx - 1)[None]).reshape(-1)
    t = torch.cat([torch.stack([i, i + nx, i + 1], 1), torch.stack([i + 1, i + nx, i + nx + 1], 1)])
    return v, t


def _meshes() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, str]]:
    out = []
    try:
        from facerecon.morphable import load_face_model

        m = load_face_model()
        out.append(
            (m.name, m.mean_shape.float(), m.tex_mean.float(), m.triangles, "default face model")
        )
    except Exception as exc:  # pragma: no cover - depends on the morphable package
        note = f"default model unavailable ({type(exc).__name__}); synthetic only"
        v, t = _grid_mesh()
        out.append(("synthetic", v, torch.full_like(v, 0.6), t, note))
        return out
    v, t = _grid_mesh()
    out.append(("synthetic-35k", v, torch.full_like(v, 0.6), t, "synthetic BFM-sized grid"))
    return out


def _median_times(fn: Callable[[], None], repeats: int) -> tuple[float, float]:
    fn()
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    wall.sort()
    cpu.sort()
    return 1e3 * wall[len(wall) // 2], 1e3 * cpu[len(cpu) // 2]


def _time_render(
    v: torch.Tensor,
    alb: torch.Tensor,
    tri: torch.Tensor,
    B: int,
    cam: CameraConfig,
    repeats: int,
    grad: bool,
) -> tuple[float, float]:
    """Median (wall, thread CPU) ms per call of one batched render (+ backward if ``grad``)."""
    verts = v[None].repeat(B, 1, 1).requires_grad_()
    albedo = alb[None].repeat(B, 1, 1).requires_grad_()
    gamma = torch.zeros(B, 27, requires_grad=True)
    angles = torch.tensor([[0.05, 0.2, 0.02]]).repeat(B, 1)
    trans = torch.zeros(B, 3)

    def step() -> None:
        if grad:
            out = render(verts, albedo, tri, angles, trans, gamma, cam)
            out.image.sum().backward()
            verts.grad = albedo.grad = gamma.grad = None
        else:
            with torch.no_grad():
                render(verts, albedo, tri, angles, trans, gamma, cam)

    return _median_times(step, repeats)


def run(quick: bool = False) -> list[dict]:
    rows: list[dict] = []
    repeats = 5 if quick else 11
    old_threads = torch.get_num_threads()
    thread_counts = [1] if quick else sorted({1, old_threads})
    cam = CameraConfig()
    try:
        for mesh_name, v, alb, tri, mesh_note in _meshes():
            desc = f"{mesh_name} {v.shape[0]} v / {tri.shape[0]} tri"
            for threads in thread_counts:
                torch.set_num_threads(threads)
                for B, grad in ((1, True), (8, True), (1, False)):
                    if quick and (B == 8 or not grad) and mesh_name.startswith("synthetic-"):
                        continue
                    load = os.getloadavg()[0]
                    wall, cpu = _time_render(v, alb, tri, B, cam, repeats, grad)
                    kind = "fwd+bwd" if grad else "fwd (no grad)"
                    rows.append(
                        dict(
                            section=SECTION,
                            name=f"render {kind} 224, batch {B}, {threads} thread(s), {desc}",
                            value=wall / B,
                            unit="ms/image",
                            notes=f"{mesh_note}; median of {repeats}; thread CPU "
                            f"{cpu / B:.1f} ms/image; load avg {load:.1f}; target < 30",
                        )
                    )
            if not quick:  # no-grad z-buffer pass alone, batch 1, single thread
                torch.set_num_threads(1)
                z = torch.zeros(1, 3)
                uv, d = project(transform(v[None], z, z, cam), cam)
                wall, cpu = _median_times(
                    lambda uv=uv, d=d, tri=tri: _zbuffer(
                        uv, d, tri, 224, 224, False, cam.near, cam.far
                    ),
                    repeats,
                )
                rows.append(
                    dict(
                        section=SECTION,
                        name=f"z-buffer visibility pass 224, batch 1, 1 thread, {desc}",
                        value=wall,
                        unit="ms",
                        notes=f"no-grad part of rasterize; thread CPU {cpu:.1f} ms",
                    )
                )
    finally:
        torch.set_num_threads(old_threads)
    return rows


if __name__ == "__main__":
    for row in run(quick=False):
        print(f"{row['name']}: {row['value']:.1f} {row['unit']} ({row['notes']})")

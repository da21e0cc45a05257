"""Photo textures (``--texture photo``): how well they explain the photo, how long they take.

Photos: the three ``faces_68pt`` photos of the development data (``../shared/data``; skipped when
absent) and the bundled astronaut. Each goes through the product's path (detector chain, align,
the default method ``auto``, ``Reconstructor.photo_texture`` at 1024 texels).

- **Photometric error**: the reconstruction rendered back with its fitted pose and light, once
  with the model's albedo (``facerecon.render.render``) and once with the photo texture
  (``facerecon.texture.render_textured`` of ``texture / texture_gain``, the albedo in the model's
  units), against the aligned 224 crop with the loss's own term and mask
  (``facerecon.losses.photometric_loss`` with skin attention x the front-face pixels, as
  ``facerecon.fit``). Goal: the texture's error at least 40 % lower on every photo.
- **Texturing time** per photo at 1024 and 2048 texels (bake, delight, blend, fill; the model's
  ``UVChart`` already built), median of several runs, wall and thread CPU; PNG encoding
  separately. Goal: <= 150 ms at 1024.
- **Baking the model albedo into a texture**: the old ``io.bake_vertex_colors_to_texture``
  (a triangle-id map rebuilt per face with a Python loop over the triangles) against
  ``UVChart.bake_colors`` (the texel map built once per model), and that one-time build.
"""

from __future__ import annotations

import functools
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SECTION = "texture"
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACERECON_SHARED", REPO.parent / "shared")) / "data" / "faces_68pt"
PHOTOS = {"einstein": "jpg", "breakingbad": "jpg", "takeo": "ppm"}


def _photos() -> list[tuple[str, Path]]:
    out = [(s, SHARED / f"{s}.{e}") for s, e in PHOTOS.items() if (SHARED / f"{s}.{e}").is_file()]
    return [*out, ("astronaut", REPO / "src" / "facerecon" / "assets" / "astronaut.jpg")]


def _timed(fn, repeats: int) -> tuple[float, float]:
    """Median (wall ms, thread CPU ms) of ``fn()`` after one warm-up call."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn()
        wall.append(1e3 * (time.perf_counter() - t0))
        cpu.append(1e3 * (time.thread_time() - c0))
    return statistics.median(wall), statistics.median(cpu)


def photometric(recon, face, rec, texture) -> tuple[float, float]:
    """``(model albedo error, photo texture error)``: the loss's photometric term."""
    from facerecon.fit.core import front_pixels
    from facerecon.losses import photometric_loss
    from facerecon.render import CameraConfig, render
    from facerecon.skin import skin_attention, skin_probability
    from facerecon.texture import render_textured

    model, cam = recon.model, CameraConfig()
    crop = torch.from_numpy(face.aligned.image).permute(2, 0, 1)[None].float() / 255.0
    p = {k: torch.from_numpy(np.asarray(v))[None].float() for k, v in rec.parts.items()}
    v = torch.from_numpy(rec.vertices)[None].float()
    albedo = torch.from_numpy(rec.albedo)[None].float()
    tex = torch.from_numpy(texture.image).permute(2, 0, 1)[None].float() / 255.0
    tex = tex / torch.as_tensor(texture.gain, dtype=torch.float32)[None, :, None, None]
    uv = torch.from_numpy(recon.uv()).float()
    with torch.no_grad():
        out = render(v, albedo, model.triangles, p["angles"], p["trans"], p["gamma"], cam)
        img, _ = render_textured(
            v, tex, uv, model.triangles, p["angles"], p["trans"], p["gamma"], cam
        )
        mask = skin_attention(skin_probability(crop)) * front_pixels(model, out.face_idx)[:, None]
        e_model = photometric_loss(crop, out.image, mask)
        e_tex = photometric_loss(crop, img, mask)
    return float(e_model), float(e_tex)


def _row(section: str, name: str, value: float, unit: str, notes: str) -> dict:
    return {"section": section, "name": name, "value": value, "unit": unit, "notes": notes}


def run(quick: bool = False) -> list[dict]:
    from facerecon.detect import DEFAULT_DETECTOR, detector_for, load_image
    from facerecon.io import bake_vertex_colors_to_texture, cylindrical_uv, png_bytes
    from facerecon.pipeline import ReconstructOptions, Reconstructor, prepare_photo
    from facerecon.texture import UVChart

    err_s, time_s, bake_s = (
        "Photo texture: photometric error",
        "Photo texture: time per photo",
        "Albedo texture bake",
    )
    rows: list[dict] = []
    recon = Reconstructor(ReconstructOptions(report=False))
    detector = detector_for(DEFAULT_DETECTOR)
    t0 = time.perf_counter()
    chart = recon.chart()
    chart.mirror_maps(1024)
    first = 1e3 * (time.perf_counter() - t0)
    reps = 3 if quick else 7
    reductions: list[float] = []
    sizes = (0, 1024, 2048)  # 0: --texture-size auto (UVChart.size_for)
    ms: dict[int, list[tuple[float, float]]] = {size: [] for size in sizes}
    for name, path in _photos():
        (face, *_) = prepare_photo(load_image(path), path, name, detector, False)
        est = recon.estimate([face], shared_identity=False)
        rec = recon.reconstruction(face, est.coeffs[0])
        texture = recon.photo_texture([face], [rec])
        e_model, e_tex = photometric(recon, face, rec, texture)
        red = 100.0 * (1.0 - e_tex / e_model)
        reductions.append(red)
        notes = (
            f"photo texture {e_tex:.4f} vs model albedo {e_model:.4f} (the loss's term, skin "
            f"attention x front face, 224 crop); method {recon.options.method}; "
            f"{100 * texture.seen:.0f} % of the chart seen; goal >= 40 %"
        )
        rows.append(_row(err_s, name, red, "% lower", notes + f"; {len(texture.image)} px"))
        for size in sizes:
            recon.options.texture_size = size
            wall, cpu = _timed(functools.partial(recon.photo_texture, [face], [rec]), reps)
            ms[size].append((wall, cpu))
            image = recon.photo_texture([face], [rec]).image
            png = _timed(functools.partial(png_bytes, image), reps)[0]
            note = f"thread CPU {cpu:.0f} ms; median of {reps}; PNG encoding another {png:.0f} ms"
            label = f"auto: {len(image)}" if size == 0 else f"{size}"
            rows.append(_row(time_s, f"{name}, {label} px", wall, "ms", note))
        recon.options.texture_size = 0
    met = "met" if min(reductions) >= 40 else "NOT met"
    rows.append(_row(err_s, "worst photo", min(reductions), "% lower", f"goal >= 40 %: {met}"))
    for size in sizes:
        wall = statistics.median(w for w, _ in ms[size])
        cpu = statistics.median(c for _, c in ms[size])
        note = f"thread CPU {cpu:.0f} ms; {len(ms[size])} photos, 2-core CPU"
        if size == 1024:
            note += "; goal <= 150 ms: " + ("met" if wall <= 150 else "NOT met")
        label = "auto (--texture-size default)" if size == 0 else f"{size} px"
        rows.append(_row(time_s, f"median, {label}", wall, "ms", note))
    note = "the cached chart read (UVChart.of_model(cache=...)), mirror maps"
    rows.append(_row(time_s, "the model's UVChart, once per run", first, "ms", note))

    # the model's albedo as a texture: old per-face bake vs the cached texel map
    model = recon.model
    tri = model.triangles.numpy()
    albedo = model.tex_mean.clamp(0, 1).numpy()
    cyl = cylindrical_uv(model.mean_shape.numpy())
    for size in (1024, 2048):
        old = _timed(functools.partial(bake_vertex_colors_to_texture, cyl, tri, albedo, size), 2)
        new = _timed(functools.partial(chart.bake_colors, albedo, size), reps)
        note = (
            "io.bake_vertex_colors_to_texture: a triangle-id map rebuilt per face (Python loop "
            f"over {len(tri)} triangles); thread CPU {old[1]:.0f} ms"
        )
        rows.append(_row(bake_s, f"per face, {size} px, old", old[0], "ms", note))
        note = (
            f"UVChart.bake_colors: {old[0] / new[0]:.0f}x faster; its texel map is built once "
            f"per model (row below); thread CPU {new[1]:.0f} ms"
        )
        rows.append(_row(bake_s, f"per face, {size} px, new", new[0], "ms", note))
    build = _timed(lambda: UVChart.of_model(model).texels(512), 2)[0]
    note = "chart UV, mirror pairs, the 512 UV rasterization with its ring"
    rows.append(_row(bake_s, "UVChart and its texel map, built", build, "ms", note))
    with tempfile.TemporaryDirectory() as cache:
        UVChart.of_model(model, cache=cache)
        read = _timed(lambda: UVChart.of_model(model, cache=cache), reps)[0]
    note = "the same read back from the chart cache ($FACERECON_CACHE/charts, once per model)"
    rows.append(_row(bake_s, "UVChart and its texel maps, cached", read, "ms", note))
    return rows


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)

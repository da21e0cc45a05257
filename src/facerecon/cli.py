"""``facerecon`` command line: reconstruct, info, model import, demo.

Every user error prints one line ``error: <message>`` and exits non-zero; a batch keeps going
past a bad file and exits 1 when any input failed.
"""

from __future__ import annotations

import argparse
import platform
import sys
from importlib import resources
from pathlib import Path

from facerecon import __version__
from facerecon.cache import cache_dir
from facerecon.errors import FaceReconError

EXIT_OK, EXIT_ERROR, EXIT_SOME_FAILED, EXIT_USAGE = 0, 2, 1, 2
# facerecon.detect.DETECTOR_CHOICES (not imported here: the parser loads no image libraries;
# tests/test_cli.py checks the two agree)
DETECTOR_CHOICES = ("auto", "fast", "dlib", "mmod", "mediapipe")


def method_choices() -> list[str]:
    """``--method`` choices: the registry of :mod:`facerecon.methods`."""
    from facerecon.methods import method_names

    return method_names()


def _reconstruct_parser(sub) -> None:
    p = sub.add_parser(
        "reconstruct",
        help="photos -> 3D faces (mesh, coefficients, overlays, report)",
        description="Reconstruct the face(s) in each photo. PATH may be files, folders or globs.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument("--out", type=Path, default=Path("facerecon_out"), help="output folder")
    p.add_argument(
        "--views",
        nargs="+",
        metavar="PHOTO",
        default=None,
        help="1 to 3 simultaneous views of one face (e.g. left, front, right; any order): one "
        "identity and expression, per-view pose and light (default method: mvfit, the joint "
        "fit of the views; mvr / mvr-auto use the DF-MVR network)",
    )
    p.add_argument(
        "--mvr-weights",
        type=Path,
        default=None,
        help="DF-MVR weights for mvr / mvr-auto (default: the ones shipped for the model)",
    )
    p.add_argument(
        "--set",
        dest="as_set",
        action="store_true",
        help="treat all inputs as one person: one shared identity (a photo whose face does not "
        "look like the others' is reported)",
    )
    p.add_argument(
        "--strict-set",
        action="store_true",
        help="with --set: a photo whose face does not look like the others' fails and is left "
        "out of the set",
    )
    p.add_argument(
        "--model", default="bfm-lite", help="face model name (bfm-lite, bfm09, ict) or .npz path"
    )
    p.add_argument(
        "--method",
        default=None,
        choices=method_choices(),
        help="fit: analysis-by-synthesis (no network); rnet: R-Net regression (fast); auto: "
        "R-Net estimate refined by a few fitting steps; pgn: pose from predicted 3D landmarks "
        "(the default for video clips when its weights ship); with --views: mvfit (joint fit "
        "of the views), mvr (DF-MVR network), mvr-auto (DF-MVR refined by a joint fit). "
        "Default: auto when R-Net weights are given or ship for the model, else fit",
    )
    p.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="R-Net weights for rnet / auto (default: the ones shipped for the model)",
    )
    p.add_argument(
        "--cnet",
        type=Path,
        default=None,
        help="C-Net weights: with --set, weight each photo's identity by its confidences "
        "(default with --set and an R-Net method: the C-Net shipped for the model)",
    )
    p.add_argument(
        "--no-shipped-weights",
        dest="shipped",
        action="store_false",
        help="ignore the weights shipped with facerecon (the default method becomes fit)",
    )
    p.add_argument(
        "--strategy",
        default="s4",
        choices=["avg", "s1", "s2", "s3", "s4"],
        help="identity aggregation with --cnet (s4: element-wise confidence-weighted mean)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument(
        "--rasterizer",
        default="torch",
        choices=["torch", "nvdiffrast", "auto"],
        help="renderer backend: torch (any device), nvdiffrast (CUDA, if installed), auto",
    )
    p.add_argument(
        "--all-faces", action="store_true", help="every face in a photo, not only the largest"
    )
    p.add_argument(
        "--detector",
        default=None,
        choices=DETECTOR_CHOICES,
        help="fast (default for photos and --set): MediaPipe's face box and dlib's 68 points "
        "in it, then the auto chain where that finds none; auto (default for --views and "
        "video): dlib's HOG, then HOG upsampled, MediaPipe and dlib's MMOD until one finds a "
        "face (summary.json says which did); or one of them alone",
    )
    p.add_argument("--fast", action="store_true", help="fewer fitting steps")
    p.add_argument(
        "--no-perceptual",
        dest="perceptual",
        action="store_false",
        help="never load the face-recognition net (the default noise-aware fit has no "
        "perceptual term; the paper's loss, facerecon.fit.FitConfig.paper(), has)",
    )
    p.add_argument(
        "--pgn-weights",
        type=Path,
        default=None,
        help="PGN weights for --method pgn, and for posing the views of --views turned past 45 "
        "degrees (default: the ones shipped for the model)",
    )
    p.add_argument(
        "--texture",
        default="photo",
        choices=["photo", "model"],
        help="NAME_texture.png (OBJ/MTL, GLB): photo (default): the person's own, baked from the "
        "photo(s), delit, mirror-filled, blended into the model albedo where no photo saw the "
        "face (with --set / --views: all photos blended); model: the fitted model albedo",
    )
    p.add_argument(
        "--texture-size",
        default="auto",
        choices=["auto", "512", "1024", "2048"],
        help="texels per side; auto (default): per face, the smallest size with as many texels "
        "as the photo has pixels of the face (a 1080p photo's face: 512; a close-up at 24 MP: "
        "1024 or 2048)",
    )
    p.add_argument(
        "--no-delight",
        dest="texture_delight",
        action="store_false",
        help="keep the photo texture as lit (default: divided by the fitted SH lighting)",
    )
    v = p.add_argument_group("video (PATH is a clip: .mp4, .mov, .avi, .mkv, .webm)")
    v.add_argument("--fps", type=float, default=None, help="frames per second kept (default all)")
    v.add_argument("--max-frames", type=int, default=None, help="stop after N kept frames")
    v.add_argument(
        "--smoothing",
        default="poly",
        choices=["poly", "gaussian", "one-euro", "none"],
        help="temporal smoothing of expression and pose (poly: zero-phase local quadratic "
        "regression, default; gaussian: zero-phase; one-euro: causal)",
    )
    v.add_argument(
        "--sigma", type=float, default=None, help="poly / gaussian width in frames (4 / 1.5)"
    )
    v.add_argument("--no-overlay-video", dest="overlay_video", action="store_false",
                   help="do not write NAME_overlay.mp4")  # fmt: skip
    p.add_argument("--no-report", dest="report", action="store_false")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument(
        "--resume",
        action="store_true",
        help="carry on an interrupted run into the same --out: skip the photos it completed "
        "(its summary.json lists them and their files are there), redo the rest",
    )
    p.add_argument("--quiet", action="store_true")
    t = p.add_argument_group("throughput (many photos; see BENCHMARKS.md 'Throughput')")
    t.add_argument(
        "--outputs",
        default="all",
        metavar="KINDS",
        help="per-face files to write, comma-separated: obj (with .mtl and _texture.png), "
        "neutral, glb, npz, overlay, landmarks; or all (default). summary.json always",
    )
    t.add_argument(
        "--overlay-size",
        type=int,
        default=1280,
        metavar="PX",
        help="longer side of NAME_overlay.png (larger photos are scaled down; 0: full size)",
    )
    t.add_argument(
        "--max-side",
        type=int,
        default=4096,
        metavar="PX",
        help="decode larger photos at most this many pixels a side (bounded memory; outputs "
        "stay in the photo's own pixels)",
    )
    t.add_argument(
        "--batch-size",
        type=int,
        default=0,
        metavar="N",
        help="faces estimated together (default: 16 for a network, 8 when fitting)",
    )
    t.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes sharing the photos (not with --set / --views); each gets the CPU "
        "count / N torch threads",
    )
    t.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="reconstruct only part I of N of the inputs (every N-th photo from the I-th); "
        "writes summary.shard-I-of-N.json and no report; join the parts with `facerecon "
        "merge OUT ...` (for Slurm arrays or other schedulers)",
    )
    t.add_argument("--profile", action="store_true", help="print the seconds spent in each stage")


def _model_parser(sub) -> None:
    p = sub.add_parser("model", help="face model tools")
    msub = p.add_subparsers(dest="model_cmd", required=True)
    imp = msub.add_parser("import", help="convert a face model you own into facerecon's format")
    isub = imp.add_subparsers(dest="source", required=True)
    b = isub.add_parser(
        "bfm09",
        help="Basel Face Model 2009 + the paper's expression basis and index files",
        description="Convert 01_MorphableModel.mat + Exp_Pca.bin (+ the index files of the "
        "Deep3DFaceRecon release) into the paper's 257-coefficient model.",
    )
    b.add_argument("--mat", type=Path, required=True, help="01_MorphableModel.mat")
    b.add_argument("--exp", type=Path, required=True, help="Exp_Pca.bin")
    b.add_argument(
        "--index-dir",
        type=Path,
        required=True,
        help="folder with BFM_front_idx.mat, BFM_exp_idx.mat, facemodel_info.mat, std_exp.txt",
    )
    b.add_argument("--out", type=Path, default=None, help="output .npz (default: the model cache)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facerecon", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"facerecon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _reconstruct_parser(sub)
    info = sub.add_parser("info", help="versions, face model, devices, caches")
    info.add_argument(
        "--model",
        default=None,
        help="report this face model (bfm-lite, bfm09, ict or a .npz path): vertices, "
        "coefficient layout, source and licence",
    )
    ev = sub.add_parser(
        "evaluate",
        help="accuracy of predicted meshes against ground truth (ICP + point-to-plane RMSE)",
        add_help=False,
    )
    ev.add_argument("passthrough", nargs=argparse.REMAINDER)
    tr = sub.add_parser("train", help="train networks (rnet, cnet, mvr, pgn)", add_help=False)
    tr.add_argument("net", choices=["rnet", "cnet", "mvr", "pgn"])
    tr.add_argument("passthrough", nargs=argparse.REMAINDER)
    pr = sub.add_parser(
        "prepare", help="detect, align and cache a folder of photos for training", add_help=False
    )
    pr.add_argument("passthrough", nargs=argparse.REMAINDER)
    _model_parser(sub)
    mg = sub.add_parser(
        "merge",
        help="join the summaries of reconstruct --shard runs into summary.json and a report",
    )
    mg.add_argument("folders", nargs="+", type=Path, metavar="OUT", help="the shards' --out")
    mg.add_argument("--out", type=Path, default=None, help="where to write (default: first OUT)")
    mg.add_argument("--no-report", dest="report", action="store_false")
    mg.add_argument("--overwrite", action="store_true", help="replace summary.json / report")
    d = sub.add_parser("demo", help="reconstruct the bundled photo and print where the report is")
    d.add_argument("--out", type=Path, default=Path("demo_out"))
    d.add_argument(
        "--fast", action="store_true", help="fewer fitting steps, no perceptual term (a preview)"
    )
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def check_device(device: str) -> str | None:
    """A one-line problem with ``--device`` (None when it is cpu, cuda or cuda:N)."""
    import re

    if re.fullmatch(r"cpu|cuda(:\d+)?", device):
        return None
    return f"--device {device}: use cpu, cuda or cuda:N (facerecon runs on CPUs and CUDA GPUs)"


def cmd_reconstruct(args) -> int:
    from facerecon.io.video import is_video
    from facerecon.pipeline import (
        ReconstructOptions,
        collect_inputs,
        default_detector,
        parse_outputs,
        parse_shard,
        prepare_processes,
        run,
        run_workers,
        start_prepare_worker,
    )

    problem = check_device(args.device)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    videos = [p for p in args.paths if is_video(p)]
    if videos:
        if len(videos) != len(args.paths) or args.views or args.as_set:
            print("error: give video clips alone (not with photos, --views or --set)",
                  file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        return cmd_reconstruct_videos(args, videos)
    if bool(args.paths) == bool(args.views):
        print("error: give photos as PATH ... or as --views PHOTO ..., not both or neither",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    if args.views and len(args.views) > 3:
        print(f"error: --views takes 1 to 3 photos of one face, got {len(args.views)}",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    if args.views and args.all_faces:
        print("error: --views uses the largest face of each photo; drop --all-faces",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    if args.batch_size < 0 or args.workers < 1 or args.overlay_size < 0 or args.max_side < 256:
        print("error: --batch-size and --overlay-size take N >= 0, --workers N >= 1, "
              "--max-side N >= 256", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    options = ReconstructOptions(
        out_dir=args.out,
        model=args.model,
        method=args.method,
        weights=args.weights,
        cnet=args.cnet,
        shipped=args.shipped,
        rasterizer=args.rasterizer,
        strategy=args.strategy,
        device=args.device,
        as_set=args.as_set,
        views=bool(args.views),  # resolve_options makes it a set of views
        mvr_weights=args.mvr_weights,
        pgn_weights=args.pgn_weights,
        all_faces=args.all_faces,
        overwrite=args.overwrite,
        detector=args.detector or default_detector(bool(args.views)),
        perceptual=args.perceptual,
        fast=args.fast,
        report=args.report,
        outputs=parse_outputs(args.outputs),
        batch_size=args.batch_size,
        overlay_size=args.overlay_size,
        max_side=args.max_side,
        workers=args.workers,
        resume=args.resume,
        strict_set=args.strict_set,
        shard=parse_shard(args.shard) if args.shard else None,
        texture=args.texture,
        texture_size=0 if args.texture_size == "auto" else int(args.texture_size),
        texture_delight=args.texture_delight,
    )
    inputs = args.views or args.paths
    if args.workers > 1:
        summary = run_workers(inputs, options, show_progress=not args.quiet)
        return report_summary(summary, args.out, args.profile)
    # the photos are loaded, detected and aligned in processes forked before torch loads:
    # the detector's libraries and models (~1 s) load there while torch loads here
    photos = len(collect_inputs(inputs, [])[0])
    worker = start_prepare_worker(options.detector, prepare_processes(photos, args.method))
    try:
        summary = run(inputs, options, show_progress=not args.quiet, worker=worker)
    finally:
        if worker is not None:
            worker.close()
    return report_summary(summary, args.out, args.profile)


def report_summary(summary, out: Path, profile: bool) -> int:
    """Print a run's failures, counts, report path (and with ``profile`` its stage table);
    returns the exit code."""
    from facerecon.timing import format_profile

    for source, message in summary.failed:
        print(f"failed: {source}: {message}", file=sys.stderr)
    for message in summary.notes:
        print(f"note: {message}", file=sys.stderr)
    for message in summary.warnings:
        print(f"warning: {message}", file=sys.stderr)
    n_ok = len(summary.written)
    print(f"{n_ok} face(s) written to {out}; {len(summary.failed)} input(s) failed")
    if summary.report:
        print(f"report: {summary.report}")
    if profile:
        print(format_profile(summary.stages, summary.photos, summary.seconds))
    return EXIT_OK if summary.ok else EXIT_SOME_FAILED


def cmd_merge(args) -> int:
    from facerecon.pipeline import merge_shards

    summary = merge_shards(args.folders, args.out, args.overwrite, args.report)
    return report_summary(summary, args.out or args.folders[0], False)


def cmd_reconstruct_videos(args, videos: list[str]) -> int:
    """``facerecon reconstruct clip.mp4 ...``: one clip after another; a bad clip is reported
    and the others go on; ``summary.json`` lists the clips written and the ones that failed."""
    import json

    from facerecon.clip import ClipOptions, clip_outputs, run_clip
    from facerecon.io.paths import check_outputs_free, ensure_writable, prepare_out_dir
    from facerecon.pipeline import unique_names

    if args.method not in (None, "pgn", "rnet", "auto", "fit"):
        print(
            f"error: --method {args.method} does not take video; use pgn, rnet, auto or fit",
            file=sys.stderr,
        )
        return EXIT_USAGE
    paths = [Path(v) for v in videos]
    names = unique_names(paths)
    summary_path = args.out / "summary.json"
    planned = [summary_path] + ([args.out / "report.html"] if args.report else [])
    for n in names:
        planned.extend(clip_outputs(args.out, n, args.overlay_video).values())
    check_outputs_free([p for p in planned if p.exists()], args.overwrite)
    prepare_out_dir(args.out)
    options = ClipOptions(
        out_dir=args.out,
        model=args.model,
        method=args.method,
        weights=args.weights,
        pgn_weights=args.pgn_weights,
        cnet=args.cnet,
        shipped=args.shipped,
        fps=args.fps,
        max_frames=args.max_frames,
        smoothing=args.smoothing,
        sigma=args.sigma,
        overlay=args.overlay_video,
        detector=args.detector or ClipOptions.detector,  # the clip's own default (auto)
        device=args.device,
        overwrite=args.overwrite,
        rasterizer=args.rasterizer,
        fast=True,
        perceptual=False,
    )
    written, failed = [], []
    for path, name in zip(paths, names, strict=True):
        try:
            rec = run_clip(path, options, show_progress=not args.quiet, name=name)
        except FaceReconError as exc:
            failed.append([str(path), str(exc)])
            print(f"failed: {path}: {exc}", file=sys.stderr)
            continue
        written.append(rec)  # with its per-frame status
        print(
            f"{path}: {rec['frames']} frames ({rec['frames_with_face']} with a face) in "
            f"{rec['seconds']['total']:.1f} s, {rec['frames_per_second']:.1f} frames/s"
        )
    ensure_writable(summary_path, args.overwrite).write_text(
        json.dumps({"written": written, "failed": failed}, indent=2)
    )
    if args.report and written:
        from facerecon.io import ReportEntry, write_report

        entries = [
            ReportEntry(
                name=w["name"],
                photo_path=None,
                overlay_path=w["paths"]["preview"],
                glb_path=w["paths"]["glb"],
                status="ok",
                meta={
                    "method": w["method"],
                    "frames": w["frames"],
                    "with a face": w["frames_with_face"],
                    "frames/s": round(w["frames_per_second"], 1),
                },
            )
            for w in written
        ] + [
            ReportEntry(
                name=Path(f).name,
                photo_path=None,
                overlay_path=None,
                glb_path=None,
                status="failed",
                message=m,
            )
            for f, m in failed
        ]
        report = write_report(args.out, entries, overwrite=args.overwrite)
        print(f"report: {report}")
    print(f"{len(written)} clip(s) written to {args.out}; {len(failed)} failed")
    return EXIT_OK if not failed else EXIT_SOME_FAILED


# Licences by model name, for models whose file does not state one (see README "Face models").
MODEL_LICENCES = {
    "bfm-lite": "geometry derives from the Basel Face Model 2009: research use only",
    "bfm09": "Basel Face Model 2009 licence (you obtain the files)",
    "ict": "MIT (ICT-FaceKit)",
}


def describe_model(model) -> list[str]:
    """Lines about a loaded face model: size, coefficient layout, source, licence."""
    meta = model.meta
    return [
        f"face model: {model.name} ({meta.get('version', 'no version')}), units "
        f"{meta.get('units', 'mm')}",
        f"  mesh: {model.mean_shape.shape[0]} vertices, {model.triangles.shape[0]} triangles",
        f"  coefficients: {model.layout.size} = "
        + " + ".join(
            f"{name} {s.stop - s.start} [{s.start}:{s.stop}]"
            for name, s in model.layout.slices().items()
        ),
        f"  source: {meta.get('source', 'not recorded in the model file')}",
        f"  licence: {meta.get('licence') or MODEL_LICENCES.get(model.name, 'unknown')}",
    ]


def cmd_info(args) -> int:
    import numpy
    import torch

    from facerecon.morphable import load_face_model

    if args.model is not None:  # the asked-for model only; failing to load it is an error
        print("\n".join(describe_model(load_face_model(args.model))))
        return EXIT_OK
    print(f"facerecon {__version__}")
    print(f"python {platform.python_version()} on {platform.platform()}")
    print(f"torch {torch.__version__}; numpy {numpy.__version__}")
    cuda = torch.cuda.is_available()
    devices = (
        ["cpu"]
        + [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
        if cuda
        else ["cpu"]
    )
    print(f"devices: {', '.join(devices)}; torch threads {torch.get_num_threads()}")
    print(f"cache: {cache_dir()}")
    try:
        m = load_face_model("bfm-lite")
        print(
            f"default face model: {m.name}: {m.mean_shape.shape[0]} vertices, "
            f"{m.triangles.shape[0]} triangles, layout {m.layout.sizes} = {m.layout.size}"
        )
    except FaceReconError as exc:
        print(f"default face model: unavailable ({exc})")
    from facerecon.nets.shipped import WEIGHTS_DIR, shipped_weights

    for kind in ("rnet", "cnet", "mvr"):
        path = shipped_weights(kind, "bfm-lite")
        print(f"shipped {kind} (bfm-lite): {path if path else f'none in {WEIGHTS_DIR}'}")
    for mod in ("dlib", "mediapipe", "cv2"):
        try:
            print(f"{mod} {__import__(mod).__version__}")
        except Exception as exc:  # report, never crash `info`
            print(f"{mod}: not importable ({exc.__class__.__name__})")
    return EXIT_OK


def cmd_evaluate(args) -> int:
    from facerecon.evaluate import main_evaluate

    return main_evaluate(args.passthrough)


def cmd_train(args) -> int:
    if args.net == "cnet":
        from facerecon.train.cnet import main_train_cnet

        return main_train_cnet(args.passthrough)
    if args.net == "mvr":
        from facerecon.train.mvr import main_train_mvr

        return main_train_mvr(args.passthrough)
    if args.net == "pgn":
        from facerecon.train.pgn import main_train_pgn

        return main_train_pgn(args.passthrough)
    from facerecon.train import main_train

    return main_train(args.passthrough)


def cmd_prepare(args) -> int:
    from facerecon.data.prepared import main_prepare

    return main_prepare(args.passthrough)


def cmd_model(args) -> int:
    from facerecon.morphable import import_bfm09

    out = args.out or cache_dir() / "bfm09.npz"
    path = import_bfm09(args.mat, args.exp, args.index_dir, out)
    print(f"wrote {path}; use it with --model bfm09 or --model {path}")
    return EXIT_OK


def demo_photo() -> Path:
    return Path(str(resources.files("facerecon") / "assets" / "astronaut.jpg"))


def demo_argv(out: Path, fast: bool = False, quiet: bool = False) -> list[str]:
    """The ``reconstruct`` command line the demo runs (it replaces its own earlier output)."""
    argv = ["reconstruct", str(demo_photo()), "--out", str(out), "--overwrite"]
    return argv + ["--fast"] * fast + ["--quiet"] * quiet


def cmd_demo(args) -> int:
    ns = build_parser().parse_args(demo_argv(args.out, args.fast, args.quiet))
    code = cmd_reconstruct(ns)
    if code == EXIT_OK:
        print(f"open {Path(args.out).resolve() / 'report.html'} in a browser")
    return code


def parse_command_line(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line (``args.command`` and its options); exits with the usage
    message on an error."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command in ("evaluate", "train", "prepare"):  # their own parsers read the rest
        args.passthrough = extra + args.passthrough
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_command(parse_command_line(argv))


def run_command(args: argparse.Namespace) -> int:
    """Run a :func:`parse_command_line` result; returns the exit code."""
    handlers = {
        "reconstruct": cmd_reconstruct,
        "info": cmd_info,
        "model": cmd_model,
        "evaluate": cmd_evaluate,
        "train": cmd_train,
        "prepare": cmd_prepare,
        "merge": cmd_merge,
        "demo": cmd_demo,
    }
    try:
        return handlers[args.command](args)
    except FaceReconError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        summary = getattr(exc, "summary", None)  # facerecon.pipeline.RunInterrupted
        if summary is None:
            print("error: interrupted", file=sys.stderr)
        else:
            print(f"error: interrupted: {len(summary.written)} face(s) written, summary.json "
                  "(and the report) written for them; run the same command with --resume to "
                  "do the rest", file=sys.stderr)  # fmt: skip
        return 130


# commands whose outputs are all written, renamed into place and closed when they return
QUICK_EXIT_COMMANDS = ("reconstruct", "demo", "merge", "info")


def console_main(argv: list[str] | None = None) -> None:
    """The ``facerecon`` command: :func:`main`, then for :data:`QUICK_EXIT_COMMANDS` a quick
    exit (``os._exit`` once stdout and stderr are flushed) when no Python thread that is not a
    daemon is still running.

    An interpreter that has loaded torch spends 0.3-0.4 s shutting down on this 2-core machine
    (module teardown, then libtorch's static destructors), a fifth of a one-photo run. Those
    commands' files are whole by then (each is written to a temporary name and renamed), their
    forked workers are stopped, and nothing of theirs needs the teardown; other commands (and
    :func:`main` called in-process, as the tests do) end normally."""
    import os
    import threading

    args = parse_command_line(argv)
    code = run_command(args)
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if args.command in QUICK_EXIT_COMMANDS and all(t.daemon for t in others):
        import contextlib
        import logging

        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to say there
                stream.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    console_main()

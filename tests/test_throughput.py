"""Throughput machinery: stage timing, batches, output selection, shards, workers, the fast
detector. (Speed itself is measured in BENCHMARKS.md, never asserted here.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facerecon.errors import FaceReconError
from facerecon.pipeline import (
    OUTPUT_KINDS,
    output_paths,
    parse_outputs,
    parse_shard,
    shard_indices,
)
from facerecon.shards import merge_summaries
from facerecon.timing import STAGES, StageTimes, format_profile


def test_stage_times_add_merge_and_time_blocks():
    t = StageTimes()
    t.add("fit", 1.5)
    t.merge({"fit": 0.5, "load": 0.25})
    with pytest.raises(RuntimeError), t.timed("write"):
        raise RuntimeError("the block's time still counts")
    assert t.seconds["fit"] == 2.0 and t.seconds["load"] == 0.25 and t.seconds["write"] >= 0
    assert list(t.as_dict()) == ["load", "fit", "write"]  # pipeline order
    assert t.total() == pytest.approx(2.25 + t.seconds["write"])


def test_profile_table_has_a_row_per_stage_and_the_rate():
    t = StageTimes({"load": 1.0, "network": 3.0})
    table = format_profile(t, photos=4, wall=2.0).splitlines()
    assert table[1].split()[:4] == ["load", "1.000", "250.0ms", "25.0%"]
    assert table[2].split()[:4] == ["network", "3.000", "750.0ms", "75.0%"]
    assert table[-1] == "wall 2.00 s for 4 photo(s): 2.00 photos/s"
    assert set(STAGES) >= {"load", "detect", "landmarks", "align", "network", "fit", "write"}


@pytest.mark.parametrize("n", range(0, 12))
def test_shards_split_the_inputs_once_and_evenly(n):
    for k in (1, 2, 3, 5):
        parts = [shard_indices(n, (i, k)) for i in range(k)]
        flat = sorted(x for p in parts for x in p)
        assert flat == list(range(n))  # every input once
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1
    assert shard_indices(n, None) == list(range(n))


@pytest.mark.parametrize("text", ["2/2", "-1/3", "1", "a/b", "1/0"])
def test_bad_shard_is_a_one_line_error(text):
    with pytest.raises(FaceReconError, match="--shard"):
        parse_shard(text)
    assert parse_shard("1/3") == (1, 3)


def test_outputs_select_files():
    assert parse_outputs("all") == OUTPUT_KINDS
    assert parse_outputs("npz, overlay,npz") == ("npz", "overlay")
    with pytest.raises(FaceReconError, match="--outputs 'npz,ply'"):
        parse_outputs("npz,ply")
    paths = output_paths(Path("o"), "a", ("obj",))
    assert sorted(p.name for p in paths.values()) == ["a.mtl", "a.obj", "a_texture.png"]
    assert set(output_paths(Path("o"), "a")) >= {"obj", "neutral", "glb", "npz", "overlay"}


def _part(i, n, written=(), failed=()):
    return {
        "shard": [i, n],
        "written": [{"name": w, "index": k} for w, k in written],
        "failed": [list(f) for f in failed],
        "stages": {"load": 1.0},
        "photos": len(written) + len(failed),
        "seconds": 1.0 + i,
    }


def test_merge_joins_shards_in_input_order_and_checks_them():
    parts = [
        _part(1, 2, [("b", 1), ("d", 3)], [("z.jpg", "no face")]),
        _part(0, 2, [("a", 0), ("c", 2)]),
    ]
    merged = merge_summaries(parts)
    assert [w["name"] for w in merged["written"]] == ["a", "b", "c", "d"]
    assert merged["failed"] == [["z.jpg", "no face"]]
    assert merged["stages"] == {"load": 2.0} and merged["photos"] == 5
    assert merged["seconds"] == 2.0
    with pytest.raises(FaceReconError, match="missing shard 1/2"):
        merge_summaries(parts[1:])
    with pytest.raises(FaceReconError, match="shard 0/2 twice"):
        merge_summaries([parts[1], parts[1]])
    with pytest.raises(FaceReconError, match="different splits"):
        merge_summaries([_part(0, 2), _part(0, 3)])


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "facerecon.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def four_photos(tmp_path_factory, faces_68pt):
    inputs = tmp_path_factory.mktemp("four")
    shutil.copy(faces_68pt / "takeo.ppm", inputs / "a.ppm")
    shutil.copy(faces_68pt / "einstein.jpg", inputs / "b.jpg")
    (inputs / "c.jpg").write_bytes(b"not an image")
    shutil.copy(faces_68pt / "takeo.ppm", inputs / "d.ppm")
    shutil.copy(faces_68pt / "einstein.jpg", inputs / "e.jpg")
    return inputs


@pytest.fixture(scope="module")
def one_run(four_photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    proc = _cli("reconstruct", four_photos, "--method", "rnet", "--detector", "fast",
                "--out", out, "--quiet", "--profile", "--outputs", "npz,overlay")  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # c.jpg fails
    return out, proc


def _coeffs(out: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.load(p)["coeffs"] for p in sorted(out.glob("*.npz"))}


def test_only_the_asked_outputs_and_a_stage_profile(one_run):
    out, proc = one_run
    names = sorted(p.name for p in out.iterdir())
    expected = {f"{n}{s}" for n in "abde" for s in (".npz", "_overlay.png")}
    assert set(names) == expected | {"summary.json", "report.html", "viewer.js"}
    summary = json.loads((out / "summary.json").read_text())
    assert [w["name"] for w in summary["written"]] == ["a", "b", "d", "e"]
    assert [w["index"] for w in summary["written"]] == [0, 1, 3, 4]
    for w in summary["written"]:
        assert {"load", "detect", "landmarks", "align", "network", "write"} <= set(w["stages"])
        assert all(v >= 0 for v in w["stages"].values())
    totals = summary["stages"]
    assert totals["network"] == pytest.approx(
        sum(w["stages"]["network"] for w in summary["written"]), abs=1e-3
    )
    assert summary["photos"] == 5 and summary["failed"][0][0].endswith("c.jpg")
    assert re.search(r"^network\s+\d+\.\d{3}\s+\d+\.\dms", proc.stdout, re.M), proc.stdout
    assert "photos/s" in proc.stdout


def test_workers_and_shards_give_the_outputs_of_one_run(one_run, four_photos, tmp_path):
    """Two worker processes, and two shards merged, write the same files with the same
    coefficients (the network's batches differ: 1e-5) and one summary in input order."""
    out, _ = one_run
    common = ["--method", "rnet", "--detector", "fast", "--quiet", "--outputs", "npz,overlay"]
    workers = tmp_path / "workers"
    proc = _cli("reconstruct", four_photos, "--out", workers, "--workers", "2", *common)
    assert proc.returncode == 1, proc.stderr
    shards = tmp_path / "shards"
    for i in (0, 1):
        proc = _cli("reconstruct", four_photos, "--out", shards, "--shard", f"{i}/2", *common)
        assert proc.returncode in (0, 1), proc.stderr
        assert not (shards / "summary.json").exists() and not (shards / "report.html").exists()
    proc = _cli("merge", shards)
    assert proc.returncode == 1, proc.stderr  # the merged run has a failed input
    reference = _coeffs(out)
    for other in (workers, shards):
        got = _coeffs(other)
        assert sorted(got) == sorted(reference) == ["a", "b", "d", "e"]
        for name, c in reference.items():
            np.testing.assert_allclose(got[name], c, atol=1e-5)
        summary = json.loads((other / "summary.json").read_text())
        assert [w["name"] for w in summary["written"]] == ["a", "b", "d", "e"]
        assert len(summary["failed"]) == 1 and (other / "report.html").exists()
    assert not list(workers.glob("summary.shard-*"))  # the workers' parts are merged away
    proc = _cli("merge", shards)
    assert proc.returncode == 2 and "summary.json exists" in proc.stderr  # never overwrites


def test_fit_lanes_only_for_cpu_fits_of_two_batches_or_more(monkeypatch):
    """Fit batches side by side: fits (not networks, not sets, not on a GPU) with at least two
    batches of photos, one lane per torch thread (at most 4), each lane's share of them."""
    import torch

    from facerecon.methods import method_class
    from facerecon.pipeline import ReconstructOptions, fit_lanes, lane_threads

    fit, rnet = method_class("fit"), method_class("rnet")
    opts = ReconstructOptions(out_dir=Path("x"))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert fit_lanes(fit, 16, 8, opts) == 2 and lane_threads(2) == 1
    assert fit_lanes(method_class("auto"), 40, 8, opts) == 2
    assert fit_lanes(fit, 15, 8, opts) == 1  # one batch and a part: no second lane
    assert fit_lanes(rnet, 64, 16, opts) == 1
    for other in ({"as_set": True}, {"device": "cuda"}, {"threads": False}):
        assert fit_lanes(fit, 16, 8, ReconstructOptions(out_dir=Path("x"), **other)) == 1
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # e.g. a --workers process
    assert fit_lanes(fit, 64, 8, opts) == 1 and lane_threads(1) is None
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert fit_lanes(fit, 64, 8, opts) == 4 and lane_threads(4) == 2


@pytest.mark.usefixtures("one_torch_thread")
def test_fits_in_two_lanes_equal_fits_one_after_another(faces_68pt, tmp_path, monkeypatch):
    """Four photos fitted a face per batch in two lanes side by side write the coefficients
    of the same fits one after the other (one torch thread either way, so the arithmetic is
    the same), in input order, and leave torch's thread count as it was."""
    import torch

    import facerecon.pipeline as pipeline
    from facerecon.pipeline import ReconstructOptions, run

    photos = tmp_path / "in"
    photos.mkdir()
    for k in range(4):
        shutil.copy(faces_68pt / "takeo.ppm", photos / f"p{k}.ppm")
    (photos / "p2.ppm").write_bytes(b"broken")  # a failed photo between the batches
    got = {}
    for lanes in (1, 2):
        monkeypatch.setattr(pipeline, "fit_lanes", lambda *a, lanes=lanes: lanes)
        out = tmp_path / f"lanes{lanes}"
        opts = ReconstructOptions(out_dir=out, method="fit", detector="fast", fast=True,
                                  batch_size=1, outputs=("npz",))  # fmt: skip
        summary = run([str(photos)], opts)
        assert [w["name"] for w in summary.written] == ["p0", "p1", "p3"]
        assert len(summary.failed) == 1 and torch.get_num_threads() == 1
        got[lanes] = _coeffs(out)
    assert sorted(got[1]) == sorted(got[2]) == ["p0", "p1", "p3"]
    for name, c in got[1].items():
        np.testing.assert_allclose(got[2][name], c, rtol=0, atol=1e-6)


def test_fast_detector_finds_the_faces_with_dlib_points(faces_68pt):
    """``--detector fast``: MediaPipe's box, dlib's 68 points; on the hand-labelled photos its
    landmarks are as close to the labels as HOG's (within 1.5 points of the eye distance)."""
    from facerecon.detect import detector_for, load_image
    from facerecon.io import read_pts

    fast, auto = detector_for("fast", second_opinion=False), detector_for("auto", False)
    for photo in ("breakingbad.jpg", "einstein.jpg", "takeo.ppm"):
        image = load_image(faces_68pt / photo)
        truth = read_pts(next(faces_68pt.glob(photo.split(".")[0] + "*.pts")))
        iod = np.linalg.norm(truth[36] - truth[45])
        nme = {}
        for name, det in (("fast", fast), ("auto", auto)):
            (face,) = det.detect(image)
            nme[name] = np.linalg.norm(face.lm68 - truth, axis=1).mean() / iod * 100
            assert not face.alt_lm68  # no second opinion asked for
            assert set(det.seconds.seconds) >= {"detect", "landmarks"}
        assert fast.detect(image)[0].detector == "dlib mp-box"
        assert nme["fast"] < 7.0 and nme["fast"] < nme["auto"] + 1.5, (photo, nme)


@pytest.mark.parametrize(("threaded", "threads"), [(True, 1), (True, 2), (False, 1)])
def test_ordered_work_comes_back_in_order_with_its_errors(threaded, threads):
    import threading
    import time

    from facerecon.concurrency import Ordered, prefetched

    names = set()

    def slow(k):
        names.add(threading.current_thread().name)
        time.sleep(0.01 * (3 - k % 3))  # later calls finish sooner
        if k == 4:
            raise ValueError("bad four")
        return k * k

    work = Ordered(threaded, threads)
    for k in range(7):
        work.submit(f"t{k}", slow, k)
    out = list(work.drain())
    work.close()
    assert [t for t, _, _ in out] == [f"t{k}" for k in range(7)]
    assert [r for _, r, e in out if e is None] == [0, 1, 4, 9, 25, 36]
    assert str(out[4][2]) == "bad four" and out[4][1] is None
    assert len(names) == (threads if threaded else 1)  # two writers ran side by side
    got = list(prefetched(slow, [5, 4, 3], depth=2, threaded=threaded))
    assert [(i, r) for i, r, _ in got] == [(5, 25), (4, None), (3, 9)]


def test_networks_write_with_two_threads_fits_with_one():
    from facerecon.methods import method_class
    from facerecon.pipeline import default_write_threads

    assert default_write_threads(method_class("rnet")) == 2
    assert default_write_threads(method_class("pgn")) == 2
    assert default_write_threads(method_class("fit")) == 1
    assert default_write_threads(method_class("auto")) == 1


def test_closing_ordered_work_drops_what_has_not_started():
    import threading

    from facerecon.concurrency import Ordered

    gate = threading.Event()
    work = Ordered(threaded=True)
    work.submit("running", gate.wait, 5)
    for k in range(3):
        work.submit(f"queued{k}", str, k)
    threading.Timer(0.2, gate.set).start()
    work.close()  # waits for the running call; the queued ones never run
    assert [t for t, _, _ in work.drain()] == ["running"]


FORKED_WORKER = """
import os, sys
from facerecon.concurrency import ForkedWorker

def square_or_fail(k):
    if k == 3:
        raise ValueError("bad three")
    if k == 5:
        return lambda: k  # does not pickle: its message comes back instead
    return k * k

def exit_at_two(k):
    if k == 2:
        os._exit(3)
    return k

def child_pid(k):
    return os.getpid()

assert ForkedWorker.available()
work = ForkedWorker(setup=lambda: None, depth=2)
got = list(work.map(square_or_fail, range(7)))
assert [k for k, _, _ in got] == list(range(7)), got
assert [r for _, r, e in got if e is None] == [0, 1, 4, 16, 36], got
assert str(got[3][2]) == "bad three" and got[3][1] is None, got
assert "pickle" in str(got[5][2]), got
assert [r for _, r, _ in work.map(square_or_fail, [10, 11])] == [100, 121]
work.close()
work = ForkedWorker()  # a child that dies fails what it had not done; the run goes on
got = list(work.map(exit_at_two, range(4)))
assert [r for _, r, _ in got[:2]] == [0, 1], got
assert all(r is None and "died" in str(e) for _, r, e in got[2:]), got
work.close()
from facerecon.concurrency import ForkedPool
pool = ForkedPool(setup=lambda: None, processes=3, depth=2)  # items dealt in turn, in order
got = list(pool.map(square_or_fail, range(8)))
assert [k for k, _, _ in got] == list(range(8)), got
assert [r for _, r, e in got if e is None] == [0, 1, 4, 16, 36, 49], got
assert str(got[3][2]) == "bad three", got
pids = {pid for _, pid, _ in pool.map(child_pid, range(6))}
assert len(pids) == 3
import time
start = time.perf_counter()
pool.close()  # the first child's siblings stop with it, at once
assert time.perf_counter() - start < 2, time.perf_counter() - start
time.sleep(0.2)
for pid in pids:
    try:
        os.kill(pid, 0)
        alive = open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except (OSError, FileNotFoundError):
        alive = False
    assert not alive, pid
import tempfile
log = tempfile.mktemp()
def setup():
    with open(log, "a") as f:
        f.write(f"{os.getpid()} ")
pool = ForkedPool(setup=setup, processes=2)  # the setup runs once; the siblings share it
assert len({pid for _, pid, _ in pool.map(child_pid, range(4))}) == 2
pool.close()
assert len(open(log).read().split()) == 1
import threading
threading.Thread(target=lambda: None).start()
print("ok")
"""


def test_forked_worker_hands_back_results_in_order_with_their_errors(fresh_python):
    """In a fresh process: forking one that has threads (pytest's, torch's) is unsafe, and
    :meth:`ForkedWorker.available` says so."""
    from facerecon.concurrency import ForkedWorker

    if not hasattr(os, "fork"):
        pytest.skip("processes do not fork here")
    proc = fresh_python(FORKED_WORKER)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    import torch

    torch.ones(256, 256) @ torch.ones(256, 256)
    if torch.get_num_threads() > 1:
        assert not ForkedWorker.available()


def test_the_cli_parses_and_imports_the_pipeline_without_torch(fresh_python):
    """The parser, ``--help`` and importing the pipeline load no torch, MediaPipe or scipy:
    the CLI forks its photo-preparing process before torch loads (start-up, BENCHMARKS.md)."""
    code = (
        "import sys\n"
        "from facerecon.cli import build_parser\n"
        "build_parser().parse_args(['reconstruct', 'x.jpg', '--method', 'rnet'])\n"
        "import facerecon.pipeline, facerecon.io.video, facerecon.detect\n"
        "print(sorted(m for m in ('torch', 'mediapipe', 'scipy', 'dlib') if m in sys.modules))\n"
    )
    proc = fresh_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    proc = _cli("reconstruct", "--help")
    assert proc.returncode == 0 and "--profile" in proc.stdout


def test_mediapipe_loads_without_matplotlib_and_its_drawing_still_works(fresh_python):
    """:func:`import_mediapipe` leaves matplotlib unloaded (0.3 s of start-up); MediaPipe's
    plotting helper still gets the real ``matplotlib.pyplot`` when it is first used, and a
    matplotlib imported before is left as it is."""
    code = (
        "import sys\n"
        "from facerecon.detect.mediapipe_backend import import_mediapipe\n"
        "mp = import_mediapipe()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))\n"
        "mp.solutions.face_mesh.FaceMesh(static_image_mode=True).close()\n"
        "import matplotlib\n"
        "matplotlib.use('Agg')\n"
        "plt = mp.solutions.drawing_utils.plt\n"
        "fig = plt.figure()\n"
        "print(type(fig).__name__, sys.modules['matplotlib.pyplot'].figure is plt.figure)\n"
    )
    proc = fresh_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["[]", "Figure True"], proc.stdout
    code = (
        "import sys, matplotlib.pyplot as plt\n"
        "from facerecon.detect.mediapipe_backend import import_mediapipe\n"
        "print(import_mediapipe().solutions.drawing_utils.plt is plt)\n"
    )
    proc = fresh_python(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr


def test_the_command_exits_at_once_with_its_output_whole_and_its_exit_code(four_photos, tmp_path):
    """``facerecon reconstruct`` leaves through ``os._exit`` (skipping torch's teardown,
    BENCHMARKS.md start-up): what it printed to a pipe still arrives, its files are whole and
    its exit code is the run's (1: one input failed)."""
    out = tmp_path / "o"
    proc = _cli("reconstruct", four_photos, "--method", "rnet", "--detector", "fast",
                "--out", out, "--quiet", "--outputs", "npz")  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "4 face(s) written" in proc.stdout and "failed: " in proc.stderr
    assert all(np.isfinite(np.load(p)["coeffs"]).all() for p in out.glob("*.npz"))
    assert len(json.loads((out / "summary.json").read_text())["written"]) == 4


def test_photos_prepared_in_processes_equal_those_prepared_here(faces_68pt, fresh_python):
    code = f"""
import numpy as np
from pathlib import Path
from facerecon.pipeline import PhotoPreparer, start_prepare_worker
root = Path({str(faces_68pt)!r})
paths = [root / "takeo.ppm", root / "einstein.jpg", root / "breakingbad.jpg"]
names = ["takeo", "e", "bb"]
prepare = PhotoPreparer(paths, names, "fast", second_opinion=False, all_faces=False,
                        max_side=4096)
worker = start_prepare_worker("fast", processes=2)  # photos dealt to two processes
assert worker is not None and len(worker) == 2
there = list(worker.map(prepare, [0, 1, 2]))
worker.close()
for (i, faces, exc), here in zip(there, [prepare(i) for i in (0, 1, 2)], strict=True):
    assert exc is None and i == here[0].index, exc
    (a,), (b,) = faces, here
    assert a.name == b.name and a.detector == b.detector
    np.testing.assert_array_equal(a.detected_lm68, b.detected_lm68)
    np.testing.assert_array_equal(a.aligned.image, b.aligned.image)
    np.testing.assert_array_equal(a.photo, b.photo)
print("ok")
"""
    if not hasattr(os, "fork"):
        pytest.skip("processes do not fork here")
    proc = fresh_python(code, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_fast_chain_searches_a_photo_for_small_faces_once(faces_68pt):
    """A small face on a 1080p canvas needs MediaPipe's tiled search; the fast chain's box and
    its second opinion share one search of the photo, which stops at the coarsest tile level
    with a face, and a changed photo is searched again. The second opinion's points are the
    same with the shared search as without it."""
    from facerecon.detect import detector_for, load_image
    from facerecon.detect.boxes import tile_levels
    from facerecon.detect.mediapipe_backend import MediapipeDetector

    face = load_image(faces_68pt / "takeo.ppm")  # 225 x 150: its face ~100 px of 1920
    canvas = np.full((1080, 1920, 3), 90, np.uint8)
    canvas[600 : 600 + face.shape[0], 1200 : 1200 + face.shape[1]] = face
    calls = []
    real = MediapipeDetector._boxes_in

    def counted(self, image, max_side):
        calls.append(image.shape)
        return real(self, image, max_side)

    MediapipeDetector._boxes_in = counted
    try:
        det = detector_for("fast")
        (found,) = det.detect(canvas)
        searches = len(calls)
        # one search: the whole photo, then its tiles level by level until one has the face
        # (not again for the second opinion)
        levels = tile_levels(1080, 1920, base=512)
        passes = [1 + sum(len(t) for t in levels[: k + 1]) for k in range(len(levels))]
        assert searches in passes[:-1], (searches, passes)  # found before the finest level
        assert found.detector == "dlib mp-box"
        assert "mediapipe" in found.alt_lm68  # the second opinion came from the same search
        calls.clear()
        moved = np.roll(canvas, 40, axis=1)  # a new photo: searched again
        (again,) = det.detect(moved)
        assert len(calls) == searches
        np.testing.assert_allclose(again.lm68[:, 0] - found.lm68[:, 0], 40, atol=3)
        alone = MediapipeDetector().detect(canvas)  # the same search, not shared
        np.testing.assert_allclose(found.alt_lm68["mediapipe"], alone[0].lm68, atol=1e-6)
    finally:
        MediapipeDetector._boxes_in = real
        det.close()


def test_level_tiles_reduce_the_image_once_and_map_back_to_the_photo():
    """:func:`level_tiles` cuts a level's tiles from one reduced copy: each holds what reducing
    the tile alone would (within the reduction's cell phase), at most ``px`` a side, and a box
    in its pixels maps back onto the photo within a copy pixel."""
    import cv2

    from facerecon.detect.boxes import level_tiles, tile_levels, unscale_box

    rng = np.random.default_rng(1)
    image = cv2.resize(rng.integers(0, 255, (27, 48, 3), dtype=np.uint8), (1920, 1080),
                       interpolation=cv2.INTER_CUBIC)  # fmt: skip
    for level in tile_levels(1080, 1920, base=512):
        tiles = level_tiles(image, level, 192)
        assert len(tiles) == len(level)
        for (x0, y0, x1, y1), (pixels, (ox, oy, fx, fy)) in zip(level, tiles, strict=True):
            assert max(pixels.shape[:2]) <= 192
            alone = cv2.resize(image[y0:y1, x0:x1], pixels.shape[1::-1],
                               interpolation=cv2.INTER_AREA)  # fmt: skip
            assert np.abs(alone.astype(float) - pixels).mean() < 3.0
            assert abs(ox - x0) <= 0.5 / fx + 1e-9 and abs(oy - y0) <= 0.5 / fy + 1e-9
            # a marked square in the tile's pixels lands where it is in the photo
            q = np.array([40.0, 50.0, 90.0, 100.0])
            b = unscale_box(q, fx, fy) + np.array([ox, oy, ox, oy])
            np.testing.assert_allclose(b, unscale_box(q, fx, fy) + np.array([x0, y0, x0, y0]),
                                       atol=0.5 / min(fx, fy) + 1e-9)  # fmt: skip
    small = [(0, 0, 150, 150), (75, 0, 225, 150)]  # already small enough: cut as they are
    for (x0, y0, x1, y1), (pixels, to_photo) in zip(small, level_tiles(image, small, 192),
                                                     strict=True):  # fmt: skip
        np.testing.assert_array_equal(pixels, image[y0:y1, x0:x1])
        np.testing.assert_array_equal(to_photo, [x0, y0, 1, 1])
    assert level_tiles(image, [], 192) == []


def test_prepare_processes_and_torch_threads_beside_them():
    """A network-only method gets a preparing process per core (up to 4) from 8 photos on,
    a fit from 48; torch then keeps the cores the processes leave (fits keep theirs)."""
    from facerecon.methods import method_class
    from facerecon.pipeline import beside_workers, prepare_processes

    assert prepare_processes(32, "rnet", cpus=2) == 2
    assert prepare_processes(7, "rnet", cpus=2) == 1
    assert prepare_processes(32, "auto", cpus=2) == 1
    assert prepare_processes(32, None, cpus=2) == 1
    assert prepare_processes(48, "fit", cpus=2) == 2
    assert prepare_processes(200, "rnet", cpus=16) == 4
    assert prepare_processes(200, "rnet", cpus=1) == 1

    class Pool(list):
        pass

    two = Pool([0, 1])
    assert beside_workers(method_class("rnet"), two, cpus=2) == 1
    assert beside_workers(method_class("rnet"), Pool([0]), cpus=4) == 3
    assert beside_workers(method_class("auto"), two, cpus=2) is None
    assert beside_workers(method_class("rnet"), None, cpus=2) is None


def test_tile_levels_cover_every_face_of_their_size_coarsest_first():
    """Each level's tiles lie in the image and hold every square of up to half their side
    whole; levels run from the shorter side down to the base; a square image starts one level
    below itself; a long strip keeps one level of the strip's height."""
    from facerecon.detect.boxes import tile_levels

    levels = tile_levels(1080, 1920, base=512)
    sides = [lv[0][2] - lv[0][0] for lv in levels]
    assert sides == [1080, 720, 512] and [len(lv) for lv in levels] == [3, 10, 28]
    rng = np.random.default_rng(0)
    for lv, t in zip(levels, sides, strict=True):
        assert all(0 <= x0 < x1 <= 1920 and 0 <= y0 < y1 <= 1080 for x0, y0, x1, y1 in lv)
        assert all(x1 - x0 == t and y1 - y0 == t for x0, y0, x1, y1 in lv)
        for _ in range(200):  # a random face of size <= t / 2 lies whole in some tile
            f = int(rng.integers(8, t // 2 + 1))
            x, y = int(rng.integers(0, 1920 - f + 1)), int(rng.integers(0, 1080 - f + 1))
            assert any(x0 <= x and y0 <= y and x + f <= x1 and y + f <= y1
                       for x0, y0, x1, y1 in lv)  # fmt: skip
    square = tile_levels(1024, 1024, base=512)
    assert [lv[0][2] - lv[0][0] for lv in square] == [683, 512]
    strip = tile_levels(200, 30000, base=512)
    assert len(strip) == 1 and len(strip[0]) == 299
    assert tile_levels(400, 300, base=512) == [[(0, 0, 300, 300), (0, 100, 300, 400)]]

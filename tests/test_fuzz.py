"""Bad and unusual inputs, as a new user would give them: every case ends with a clear
one-line message (no traceback) and the right exit code, a batch goes on past its bad files,
and nothing else in the output folder changes.

The inputs are generated here (no binary fixtures). Photo-level cases share one batch run
(``--method rnet --detector fast``: the detector chain and the writers are the product's);
command-level cases each run the CLI in a real subprocess. Concurrency (two runs on one
folder, 20 times) and Ctrl-C are real processes too.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TRACEBACK = "Traceback (most recent call last)"


def _cli(*args, timeout=600, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "facerecon.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def _png(image: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", **kw)
    return buf.getvalue()


def _save(path: Path, image, fmt: str, **kw) -> None:
    img = image if isinstance(image, Image.Image) else Image.fromarray(image)
    img.save(path, format=fmt, **kw)


@pytest.fixture(scope="module")
def takeo(faces_68pt) -> np.ndarray:
    return np.asarray(Image.open(faces_68pt / "takeo.ppm").convert("RGB"))


#: photo-level cases: file name -> (what it is, expected outcome "ok" or "fail")
def _photo_cases(folder: Path, takeo: np.ndarray, faces_68pt: Path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    jpeg = (faces_68pt / "einstein.jpg").read_bytes()
    png = _png(takeo)
    cases: dict[str, str] = {}

    def add(name: str, outcome: str, data: bytes | None = None, write=None) -> None:
        path = folder / name
        if data is not None:
            path.write_bytes(data)
        else:
            write(path)
        cases[name] = outcome

    add("empty.jpg", "fail", b"")
    add("random.jpg", "fail", rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    add("text.png", "fail", b"this is a text file, not a picture\n" * 20)
    add("truncated.jpg", "fail", jpeg[: len(jpeg) // 3])
    add("truncated.png", "fail", png[: len(png) // 2])
    add("header_only.jpg", "fail", jpeg[:20])
    add("one_pixel.png", "fail", _png(np.zeros((1, 1, 3), np.uint8)))
    add("tiny.png", "fail", _png(np.full((10, 12, 3), 128, np.uint8)))
    add("gray_no_face.png", "fail", _png(np.full((480, 640, 3), 128, np.uint8)))
    noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    add("noise_no_face.png", "fail", _png(noise))
    add("bomb.png", "fail", _bomb_png())
    add("grayscale.png", "ok", _png(np.asarray(Image.fromarray(takeo).convert("L"))))
    rgba = np.dstack([takeo, np.full(takeo.shape[:2], 200, np.uint8)])
    add("rgba.png", "ok", _png(rgba))
    add("sixteen_bit.png", "ok", write=lambda p: _save16(p, takeo))
    add("cmyk.jpg", "ok", write=lambda p: _save(p, Image.fromarray(takeo).convert("CMYK"), "JPEG"))
    add("palette.png", "ok", write=lambda p: _save(p, Image.fromarray(takeo).quantize(64), "PNG"))
    add("exif_rotated.jpg", "ok", write=lambda p: _save_exif_rotated(p, takeo))
    add("turned_90.png", "ok", _png(np.ascontiguousarray(np.rot90(takeo, -1))))
    add("ünïcödé 名前.png", "ok", png)
    add("with spaces.png", "ok", png)
    add("photo.bmp", "ok", write=lambda p: _save(p, takeo, "BMP"))
    add("photo.webp", "ok", write=lambda p: _save(p, takeo, "WEBP", quality=95))
    add("photo.tif", "ok", write=lambda p: _save(p, takeo, "TIFF"))
    add("upper_case.PNG", "ok", png)
    strip = np.full((160, 6000, 3), 90, np.uint8)
    strip[:, 4000 : 4000 + takeo.shape[1]] = takeo[30:190]
    add("long_strip.png", "ok", _png(strip))
    big = np.asarray(Image.fromarray(takeo).resize((1500, 2250)))
    canvas = np.full((4000, 6000, 3), 60, np.uint8)
    canvas[900 : 900 + 2250, 2500:4000] = big
    add("24_megapixels.jpg", "ok", write=lambda p: _save(p, canvas, "JPEG", quality=90))
    elsewhere = folder.parent / f"{folder.name}_elsewhere.png"
    elsewhere.write_bytes(png)
    (folder / "link.png").symlink_to(elsewhere)  # a link to a photo outside the folder
    cases["link.png"] = "ok"
    (folder / "dangling.png").symlink_to(folder / "does_not_exist.png")
    cases["dangling.png"] = "fail"
    (folder / "a_folder.jpg").mkdir()  # a folder with an image suffix: skipped, said so
    (folder / "notes.txt").write_text("not an image suffix: skipped, said so")
    return cases


def _bomb_png() -> bytes:
    """A valid PNG header claiming 60000 x 60000 pixels (3.6 GP) with almost no data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))


def _save16(path: Path, image: np.ndarray) -> None:
    import cv2

    cv2.imwrite(str(path), (image[..., ::-1].astype(np.uint16) * 257))


def _save_exif_rotated(path: Path, image: np.ndarray) -> None:
    """Pixels stored turned, with EXIF orientation 6 saying how to show them upright."""
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(image, 1)))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, format="JPEG", exif=exif, quality=95)


@pytest.fixture(scope="module")
def batch(tmp_path_factory, takeo, faces_68pt):
    folder = tmp_path_factory.mktemp("fuzz_in")
    cases = _photo_cases(folder, takeo, faces_68pt)
    out = tmp_path_factory.mktemp("fuzz_out")
    proc = _cli("reconstruct", folder, "--method", "rnet", "--detector", "fast", "--out", out,
                "--quiet", "--outputs", "npz,overlay,landmarks")  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    return folder, cases, out, proc, summary


def _cases(kind: str) -> list[str]:
    names = {
        "fail": ["empty.jpg", "random.jpg", "text.png", "truncated.jpg", "truncated.png",
                 "header_only.jpg", "one_pixel.png", "tiny.png", "gray_no_face.png",
                 "noise_no_face.png", "bomb.png", "dangling.png"],
        "ok": ["grayscale.png", "rgba.png", "sixteen_bit.png", "cmyk.jpg", "palette.png",
               "exif_rotated.jpg", "turned_90.png", "ünïcödé 名前.png", "with spaces.png",
               "photo.bmp", "photo.webp", "photo.tif", "upper_case.PNG", "long_strip.png",
               "24_megapixels.jpg", "link.png"],
    }  # fmt: skip
    return names[kind]


def test_the_batch_finishes_with_exit_1_and_no_traceback(batch):
    _, cases, _, proc, _ = batch
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert TRACEBACK not in proc.stderr
    assert sorted(_cases("fail") + _cases("ok")) == sorted(cases)


@pytest.mark.parametrize("name", _cases("fail"))
def test_a_bad_photo_fails_alone_with_one_line(batch, name):
    folder, _, out, proc, summary = batch
    failed = {Path(p).name: msg for p, msg in summary["failed"]}
    assert name in failed, sorted(failed)
    message = failed[name]
    assert "\n" not in message and 10 < len(message) < 300, message
    line = f"failed: {folder / name}: {message}"
    assert line in proc.stderr.splitlines(), proc.stderr[-2000:]
    assert not list(out.glob(Path(name).stem + "*")), "a failed photo left files"


@pytest.mark.parametrize("name", _cases("ok"))
def test_an_unusual_photo_is_reconstructed(batch, name):
    summary = batch[-1]
    written = {Path(w["source"]).name: w for w in summary["written"]}
    assert name in written, summary["failed"]
    entry = written[name]
    for path in entry["paths"].values():
        assert Path(path).stat().st_size > 0
    assert entry["landmark_error_px"] < 0.15 * _face_size(entry), entry


def _face_size(entry: dict) -> float:
    lm = np.asarray(json.loads(Path(entry["paths"]["landmarks"]).read_text())["landmarks68"])
    return float(np.ptp(lm[:, 0]))


def test_turned_photos_are_found_upright_and_reported(batch):
    _, _, _, _, summary = batch
    written = {Path(w["source"]).name: w for w in summary["written"]}
    assert written["turned_90.png"]["rotated"] == 90
    assert "rotated" not in written["with spaces.png"]
    assert "rotated" not in written["exif_rotated.jpg"]  # EXIF says how: no search needed


def test_folders_and_other_files_in_an_input_folder_are_reported(batch):
    folder, _, _, proc, summary = batch
    note = f"{folder}: skipped 1 sub-folder(s) (not searched) and 1 file(s) without an image suffix"
    assert summary["notes"] == [note]
    assert f"note: {note}" in proc.stderr


# -- command-level cases: exit 2, one line, the output folder untouched ----------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_files")
    (d / "empty.pt").write_bytes(b"")
    (d / "random.pt").write_bytes(np.random.default_rng(1).bytes(5000))
    (d / "weights_folder").mkdir()
    (d / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (d / "a_file").write_text("I am a file")
    return d


def _usage_cases(bad: Path, photo: Path) -> list[tuple[list, str]]:
    return [
        (["--device", "mps"], "--device mps: use cpu, cuda or cuda:N"),
        (["--device", "tpu:7"], "--device tpu:7: use cpu, cuda or cuda:N"),
        (["--method", "rnet", "--weights", bad / "empty.pt"], "is an empty file"),
        (["--method", "rnet", "--weights", bad / "random.pt"], "not a torch file, or corrupt"),
        (["--method", "rnet", "--weights", bad / "weights_folder"], "is a folder; give the .pt"),
        (["--model", bad / "missing.npz"], "face model file not found"),
        (["--model", "nonsense"], "unknown face model 'nonsense'"),
        (["--model", bad / "corrupt.npz"], "corrupt.npz"),
        (["--batch-size", "-1"], "--batch-size and --overlay-size take N >= 0"),
        (["--workers", "0"], "--workers N >= 1"),
        (["--shard", "3/2"], "--shard 3/2: use I/N"),
        (["--outputs", "obj,ply"], "--outputs 'obj,ply'"),
        (["--views", photo, photo, photo, photo], "--views takes 1 to 3 photos"),
        (["--workers", "2", "--set"], "--set / --views are one job"),
    ]


@pytest.mark.parametrize("case", range(14))
def test_a_bad_command_is_one_line_and_changes_nothing(tmp_path, bad_files, faces_68pt, case):
    photo = faces_68pt / "takeo.ppm"
    args, expected = _usage_cases(bad_files, photo)[case]
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("the user's file")
    inputs = [] if "--views" in args else [photo]
    proc = _cli("reconstruct", *inputs, "--out", out, "--quiet", *args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert TRACEBACK not in proc.stderr
    errors = [ln for ln in lines if ln.startswith(("error:", "facerecon"))]
    assert len(errors) == 1 and expected in errors[0], lines
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["prepare", "{photo_dir}", "{bad}/a_file"], "is a file, not a folder"),
        (["prepare", "{bad}/no_such_folder", "{bad}/prep_out"], "not a folder"),
        (["evaluate", "--pred", "{bad}", "--gt", "{bad}", "--crop-mm", "-5"], "must be a positive"),
        (["reconstruct", "{bad}/nothing_here_*.jpg"], "no input images found"),
        (["reconstruct", "{photo_dir}/takeo.ppm", "--out", "{bad}/a_file"], "is a file"),
        (["reconstruct", "{photo_dir}/takeo.ppm", "--out", "/proc/facerecon_out"], "--out"),
        (["reconstruct", "{photo_dir}/takeo.ppm", "--out", "/proc/self"], "cannot write to --out"),
        (["merge", "{bad}"], "no summary.shard-*-of-*.json"),
    ],
)
def test_other_bad_commands_are_one_line(bad_files, faces_68pt, args, expected):
    args = [a.format(bad=bad_files, photo_dir=faces_68pt) for a in args]
    before = sorted(p.name for p in bad_files.iterdir())
    proc = _cli(*args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert TRACEBACK not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if "error" in ln]
    assert len(lines) == 1 and expected in lines[0], proc.stderr[-2000:]
    assert sorted(p.name for p in bad_files.iterdir()) == before


def test_existing_outputs_are_refused_untouched(tmp_path, faces_68pt):
    out = tmp_path / "out"
    out.mkdir()
    (out / "takeo.npz").write_bytes(b"the user's npz")
    proc = _cli("reconstruct", faces_68pt / "takeo.ppm", "--out", out, "--quiet")
    assert proc.returncode == 2 and TRACEBACK not in proc.stderr
    assert (
        proc.stderr.strip() == f"error: {out / 'takeo.npz'} exists; pass --overwrite to replace it"
    )
    assert (out / "takeo.npz").read_bytes() == b"the user's npz"
    assert sorted(p.name for p in out.iterdir()) == ["takeo.npz"]


def test_a_set_of_different_people_is_reported_and_strict_leaves_them_out(tmp_path, faces_68pt,
                                                                           takeo):  # fmt: skip
    photos = tmp_path / "in"
    photos.mkdir()
    Image.fromarray(takeo).save(photos / "takeo_a.png")
    Image.fromarray(np.ascontiguousarray(takeo[:, ::-1])).save(photos / "takeo_b.png")
    shutil.copy(faces_68pt / "einstein.jpg", photos / "einstein.jpg")
    common = ["--set", "--method", "rnet", "--quiet", "--outputs", "npz"]
    proc = _cli("reconstruct", photos, "--out", tmp_path / "warn", *common)
    assert proc.returncode == 0, proc.stderr[-2000:]
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "einstein does not look like the other photos" in warnings[0]
    summary = json.loads((tmp_path / "warn" / "summary.json").read_text())
    assert len(summary["written"]) == 3 and len(summary["warnings"]) == 1
    proc = _cli("reconstruct", photos, "--out", tmp_path / "strict", "--strict-set", *common)
    assert proc.returncode == 1 and TRACEBACK not in proc.stderr
    summary = json.loads((tmp_path / "strict" / "summary.json").read_text())
    assert sorted(w["name"] for w in summary["written"]) == ["takeo_a", "takeo_b"]
    assert "left out (--strict-set)" in summary["failed"][0][1]


# -- concurrency and interrupts, real processes ----------------------------------------------


def _sigint_default() -> None:
    # a process started in the background (nohup, `cmd &` in a script) inherits SIGINT
    # ignored, and Python then leaves it ignored: give the child Ctrl-C back
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "facerecon.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint_default,
    )


#: how many times the two-run race is run (each about 5.6 s on 2 cores): 10 in ``make test``,
#: 20 in the robustness benchmark (``benchmarks/bench_robustness.py`` sets the variable)
RACES = int(os.environ.get("FACERECON_FUZZ_RACES", "10"))


def test_two_runs_on_one_folder_never_lose_outputs(tmp_path, faces_68pt):
    """The race of issue 17, :data:`RACES` times: two runs of the same photo into one folder
    at once.
    One writes every file; the other is refused with one line (the folder is held, or the
    outputs exist). No file is lost, and the winner's summary lists only files that exist."""
    photo = faces_68pt / "takeo.ppm"
    args = ["reconstruct", photo, "--method", "rnet", "--detector", "fast", "--quiet",
            "--no-report"]  # fmt: skip
    for k in range(RACES):
        out = tmp_path / f"o{k}"
        procs = [_start(*args, "--out", out) for _ in range(2)]
        results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
        codes = sorted(code for code, _ in results)
        assert codes == [0, 2], results
        loser = next(err for code, err in results if code == 2)
        assert TRACEBACK not in loser
        msg = [ln for ln in loser.splitlines() if ln.startswith("error:")]
        assert len(msg) == 1 and ("is writing to" in msg[0] or "exists" in msg[0]), loser
        summary = json.loads((out / "summary.json").read_text())
        (entry,) = summary["written"]
        files = sorted(Path(p).name for p in entry["paths"].values())
        assert sorted(p.name for p in out.iterdir()) == sorted([*files, "summary.json"])
        assert all(Path(p).stat().st_size > 0 for p in entry["paths"].values())


def _interrupted_run(args: list, out: Path, faces: int, timeout: float) -> tuple[str, dict]:
    """``facerecon *args`` stopped with Ctrl-C once ``faces`` npz files are in ``out``; checks
    it exits 130 without a traceback and returns its stderr and ``summary.json``."""
    proc = _start(*args)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(list(out.glob("*.npz"))) < faces:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 130, err[-2000:]
    assert TRACEBACK not in err
    return err, json.loads((out / "summary.json").read_text())


def test_ctrl_c_during_fit_lanes_stops_cleanly(tmp_path, takeo):
    """Fits in two lanes (one face a batch, ``pipeline.fit_lanes``): Ctrl-C lets the batches
    being fitted finish, writes the summary of what is done and exits 130 without a
    traceback or a half-written file."""
    photos = tmp_path / "in"
    photos.mkdir()
    for k in range(12):
        Image.fromarray(takeo).save(photos / f"p{k:02d}.png")
    out = tmp_path / "out"
    args = ["reconstruct", photos, "--out", out, "--method", "fit", "--fast", "--quiet",
            "--detector", "fast", "--batch-size", "1", "--outputs", "npz"]  # fmt: skip
    _, summary = _interrupted_run(args, out, 2, 180)
    assert summary["interrupted"] is True and 2 <= len(summary["written"]) < 12
    assert sorted(p.stem for p in out.glob("*.npz")) == sorted(
        e["name"] for e in summary["written"]
    )
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_ctrl_c_keeps_the_finished_faces_and_resume_finishes(tmp_path, faces_68pt, takeo):
    photos = tmp_path / "in"
    photos.mkdir()
    big = Image.fromarray(takeo).resize((800, 1200), Image.BICUBIC)  # ~0.15 s a photo
    for k in range(40):
        (big.transpose(Image.FLIP_LEFT_RIGHT) if k % 2 else big).save(photos / f"p{k:02d}.jpg")
    out = tmp_path / "out"
    args = ["reconstruct", photos, "--out", out, "--method", "rnet", "--detector", "fast",
            "--batch-size", "1", "--quiet", "--outputs", "npz,landmarks,overlay"]  # fmt: skip
    err, summary = _interrupted_run(args, out, 4, 120)
    assert "run the same command with --resume" in err
    assert summary["interrupted"] is True and 4 <= len(summary["written"]) < 40
    for entry in summary["written"]:  # whole files for every face it lists
        arrays = np.load(entry["paths"]["npz"])
        assert arrays["coeffs"].shape[-1] > 0
    assert not [p for p in out.iterdir() if ".tmp" in p.name]  # no half-written files
    done = {e["name"] for e in summary["written"]}
    proc = _cli(*args, "--resume")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["written"]) == 40 and "interrupted" not in summary
    assert done <= {e["name"] for e in summary["written"]}
    assert len(list(out.glob("*.npz"))) == 40


def test_a_held_folder_is_refused_at_once(tmp_path, faces_68pt):
    """A folder another run holds (its lock file locked) is refused before any work, in one
    line naming the holder; the holder's lock survives."""
    import fcntl

    from facerecon.io.paths import LOCK_NAME

    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.pwrite(fd, b"4242", 0)
    try:
        proc = _cli("reconstruct", faces_68pt / "takeo.ppm", "--out", out, "--quiet")
    finally:
        os.close(fd)
    assert proc.returncode == 2 and TRACEBACK not in proc.stderr
    assert proc.stderr.strip().startswith(
        f"error: another facerecon run (pid 4242) is writing to {out}"
    )
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


@pytest.mark.parametrize(("fmt", "exif"), [("JPEG", None), ("JPEG", 6), ("PNG", None)])
def test_large_photos_are_decoded_bounded_in_the_photo_frame(tmp_path, takeo, fmt, exif):
    """A photo larger than the working size is decoded at most ``max_side`` a side (a JPEG
    by its decoder's own scaling), and ``scale`` maps the file's pixels onto it exactly."""
    from facerecon.detect.image_io import load_image, load_image_bounded

    big = np.asarray(Image.fromarray(takeo).resize((3000, 4500), Image.BICUBIC))
    path = tmp_path / f"big.{fmt.lower()}"
    kw = {"quality": 95} if fmt == "JPEG" else {}
    if exif:
        e = Image.Exif()
        e[0x0112] = exif
        kw["exif"] = e
    Image.fromarray(big).save(path, format=fmt, **kw)
    full = load_image(path).astype(np.float64)
    loaded = load_image_bounded(path, 1024)
    h, w = loaded.image.shape[:2]
    assert max(h, w) == 1024 and loaded.original_size == full.shape[:2]
    assert loaded.scale == pytest.approx((w / full.shape[1], h / full.shape[0]))
    # the working pixel at a photo point shows what the photo shows around that point
    for x, y in [(500.0, 900.0), (1500.0, 2000.0), (2500.0, 4000.0)]:
        if full.shape[1] < full.shape[0] and exif:  # turned: points in the upright frame
            x, y = y, x
        x, y = min(x, full.shape[1] - 40), min(y, full.shape[0] - 40)
        xs, ys = (np.array([x, y]) + 0.5) * np.array(loaded.scale) - 0.5
        r = round(1 / loaded.scale[0])
        patch = full[int(y) - r : int(y) + r + 1, int(x) - r : int(x) + r + 1].mean((0, 1))
        got = loaded.image[round(ys), round(xs)].astype(np.float64)
        assert np.abs(got - patch).max() < 20, (x, y, got, patch)
        back = loaded.to_original(np.array([xs, ys]))
        np.testing.assert_allclose(back, [x, y], atol=1e-6)


def test_a_large_photo_gives_the_landmarks_of_the_photo_file(tmp_path, faces_68pt, takeo):
    """The working size is internal: a 4x larger copy of a photo gets 4x its landmarks."""
    big = Image.fromarray(takeo).resize((takeo.shape[1] * 32, takeo.shape[0] * 32), Image.BICUBIC)
    big.save(tmp_path / "big.jpg", quality=95)  # 4800 x 7200: decoded at 1/2, then fitted
    Image.fromarray(takeo).resize((600, 900), Image.BICUBIC).save(tmp_path / "small.png")
    out = tmp_path / "out"
    proc = _cli("reconstruct", tmp_path / "big.jpg", tmp_path / "small.png", "--out", out,
                "--method", "rnet", "--detector", "fast", "--quiet", "--outputs",
                "landmarks,npz")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lm = {n: np.asarray(json.loads((out / f"{n}_landmarks.json").read_text())["detected"])
          for n in ("big", "small")}  # fmt: skip
    scale = 4800 / 600
    err = np.linalg.norm((lm["big"] + 0.5) / scale - 0.5 - lm["small"], axis=1)
    assert np.median(err) < 2.0, err  # pixels of the 600 x 900 photo
    crop = np.load(out / "big.npz")["crop_to_original"]
    assert crop[0, 0] == pytest.approx(
        np.load(out / "small.npz")["crop_to_original"][0, 0] * scale, rel=0.05
    )

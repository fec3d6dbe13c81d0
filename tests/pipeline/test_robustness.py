"""One ``mimamo run`` over a corpus of bad and odd inputs beside one good clip: every input gets exactly one row.

The run is a real subprocess with file permissions enforced (``tests.unprivileged``: when the tests run as
root, the run has no CAP_DAC_OVERRIDE, so a ``chmod 000`` file is really unreadable to it). Its working,
home and temporary directories are fresh folders of the test, so that any file written outside ``--output``
shows up.
"""
import os
import shutil
import sys
from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import av
import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from beam_pipeline.run import run
from mimamo_ops.runtime.openvino_models import COMPILED_CACHE_ENV
from tests import clips
from tests.unprivileged import run_without_permission_override

REPO_ROOT = Path(__file__).resolve().parents[2]
FLAGS = ["--length", "16", "--stride", "16", "--compute_batch_size", "8", "--smoothing_size", "0.2"]
SPECIAL_NAME = "émotion $(touch pwned) ; 'q' & \"d\" `id` ü.mp4"
FRAME_KEYS = ["video_uri", "face_id", "frame_index"]


def write_frames(path: Path, frames: List[np.ndarray], codec: str = "libx264", pix_fmt: str = "yuv420p") -> Path:
    """Encodes uint8 (H, W, 3) RGB frames at 30 fps (``pix_fmt`` yuv444p allows odd sizes with libx264)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 30)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def no_frames_file(path: Path) -> Path:
    """An AVI whose header declares an MPEG-4 video stream (64x64) that holds no frame."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    return path


def damaged_middle_clip(path: Path) -> Path:
    """A real 60-frame clip with 20 kB of its middle overwritten by seeded random bytes."""
    clips.write_clip(path, clips.moving_face_frames(60), gop=10)
    data = bytearray(path.read_bytes())
    start = len(data) // 2 - 10_000
    data[start:start + 20_000] = np.random.default_rng(5).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def build_corpus(corpus: Path) -> Tuple[Dict[str, str], Path]:
    """Writes the corpus; returns {expected video_uri: kind} and the list file (with one missing line)."""
    corpus.mkdir()
    kinds = {
        "good.mp4": "good clip",
        "zero.mp4": "zero-byte",
        "truncated.mp4": "truncated",
        "random.mp4": "random bytes",
        "text.mp4": "text",
        "photo.mp4": "JPEG renamed .mp4",
        "audio_only.mp4": "audio only",
        "no_frames.avi": "container with no video frames",
        "one_frame.mp4": "one frame",
        "tiny.mp4": "16x16",
        "odd.mp4": "333x201",
        "large.mp4": "3840x2160",
        "damaged.mp4": "damaged middle",
        SPECIAL_NAME: "non-ASCII and shell-special name",
        "unreadable.mp4": "unreadable",
        "folder.mp4": "directory",
        "broken.mp4": "broken link",
        "pipe.mp4": "FIFO",
    }
    clips.moving_face_clip(corpus / "good.mp4", n_frames=24)
    clips.empty_file(corpus / "zero.mp4")
    clips.truncated_clip(corpus / "truncated.mp4", faststart=False, n_frames=24)
    clips.corrupt_file(corpus / "random.mp4")
    clips.not_a_video(corpus / "text.mp4")
    (corpus / "photo.mp4").write_bytes(cv2.imencode(".jpg", clips.face_photo(0)[..., ::-1])[1].tobytes())
    clips.audio_only_file(corpus / "audio_only.mp4")
    no_frames_file(corpus / "no_frames.avi")
    clips.write_clip(corpus / "one_frame.mp4", clips.moving_face_frames(1))
    write_frames(corpus / "tiny.mp4", [clips.textured_background((16, 16), seed=i) for i in range(3)])
    write_frames(corpus / "odd.mp4", clips.moving_face_frames(3, size=(333, 201)), pix_fmt="yuv444p")
    write_frames(corpus / "large.mp4", clips.moving_face_frames(2, size=(3840, 2160)))
    damaged_middle_clip(corpus / "damaged.mp4")
    clips.no_face_clip(corpus / SPECIAL_NAME, n_frames=8)
    shutil.copy(corpus / "good.mp4", corpus / "unreadable.mp4")
    (corpus / "unreadable.mp4").chmod(0)
    (corpus / "folder.mp4").mkdir()
    os.symlink(corpus / "nowhere.mp4", corpus / "broken.mp4")
    os.mkfifo(corpus / "pipe.mp4")
    expected = {str(corpus / name): kind for name, kind in kinds.items()}
    lists = corpus.parent / "lists"
    lists.mkdir()
    listing = lists / "corpus.txt"
    listing.write_text("# the good clip again (one row), then a line naming nothing\n../corpus/good.mp4\ngone.mp4\n")
    expected[str(lists / "gone.mp4")] = "missing list line"
    return expected, listing


def snapshot(folder: Path, skip: Path) -> Dict[str, Optional[Tuple[int, int]]]:
    """{path: (size, mtime ns) for a file, None for a folder} of every entry under ``folder`` except ``skip``.

    Matplotlib's per-user font cache and config folder (``$HOME/.cache/matplotlib``, ``$HOME/.config/matplotlib``)
    are left out: a library's cache in the user's home, not an output of the run.
    """
    allowed = {folder / "home" / ".cache", folder / "home" / ".config"}
    entries = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = [name for name in dirs if Path(root, name) != skip
                   and not (Path(root) in allowed and name == "matplotlib")]
        if Path(root) in allowed:
            continue
        for name in dirs:
            if Path(root, name) not in allowed:
                entries[os.path.join(root, name)] = None
        for name in files:
            info = os.lstat(os.path.join(root, name))
            entries[os.path.join(root, name)] = (info.st_size, info.st_mtime_ns)
    return entries


@pytest.fixture(scope="module")
def robustness_run(tmp_path_factory, synthetic_weights):
    base = tmp_path_factory.mktemp("robustness")
    expected, listing = build_corpus(base / "corpus")
    checkpoint, backbone = synthetic_weights
    for name in ("cwd", "home", "tmp"):
        (base / name).mkdir()
    output = base / "out"
    before = snapshot(base, skip=output)
    env = {"PATH": os.environ["PATH"], "HOME": str(base / "home"), "TMPDIR": str(base / "tmp"),
           "MIMAMO_CACHE_DIR": str(base / "home" / "cache"), "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
           # the session's converted backbones (tests/conftest.py): a cache, reused rather than rebuilt here
           COMPILED_CACHE_ENV: os.environ[COMPILED_CACHE_ENV]}
    command = [sys.executable, "-m", "beam_pipeline.cli", "run", str(base / "corpus"), str(listing),
               "--output", str(output), "--checkpoint", str(checkpoint), "--backbone", str(backbone), *FLAGS]
    done = run_without_permission_override(command, env, base / "cwd", timeout_s=1200)
    return base, expected, done, before


def test_the_run_finishes_with_status_3_and_a_quiet_stderr(robustness_run):
    _, _, done, _ = robustness_run
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and " INFO " not in done.stderr, done.stderr
    assert "input(s) failed: the reasons are in" in done.stdout


def test_every_input_has_exactly_one_row_with_a_readable_status_and_reason(robustness_run):
    base, expected, _, _ = robustness_run
    rows = pq.read_table(base / "out" / "videos").to_pylist()
    uris = [row["video_uri"] for row in rows]
    assert sorted(uris) == sorted(expected), set(uris) ^ set(expected)
    assert len(expected) >= 17
    by_uri = {row["video_uri"]: row for row in rows}
    for uri, row in by_uri.items():
        assert row["status"] in ("ok", "no_face", "failed"), (expected[uri], row)
        if row["status"] == "failed":
            assert row["error_stage"] and row["error"] and "\n" not in row["error"], (expected[uri], row)
    corpus, lists = base / "corpus", base / "lists"
    reasons = {
        "good.mp4": None, "folder.mp4": "is a directory, not a video file", "broken.mp4": "broken symbolic link",
        "unreadable.mp4": "(Permission denied)", "pipe.mp4": "is a FIFO, not a regular file",
    }
    for name, reason in reasons.items():
        row = by_uri[str(corpus / name)]
        assert (row["error"] is None) if reason is None else (reason in row["error"]), row
    for name in ("zero.mp4", "truncated.mp4", "random.mp4", "text.mp4", "audio_only.mp4", "no_frames.avi"):
        assert by_uri[str(corpus / name)]["status"] == "failed", by_uri[str(corpus / name)]
    assert by_uri[str(corpus / SPECIAL_NAME)]["status"] == "no_face"
    missing = by_uri[str(lists / "gone.mp4")]
    assert (missing["status"], missing["error_stage"]) == ("failed", "match")
    assert f"(line 3 of {lists / 'corpus.txt'})" in missing["error"]
    assert by_uri[str(corpus / "good.mp4")]["status"] == "ok"
    large = by_uri[str(corpus / "large.mp4")]
    assert large["status"] != "failed" and large["frame_count"] == 2, large


def test_no_file_appears_outside_the_output(robustness_run):
    base, _, _, before = robustness_run
    after = snapshot(base, skip=base / "out")
    assert after == before, set(after) ^ set(before)
    assert not list((base / "cwd").iterdir()) and not list((base / "tmp").iterdir())


def test_the_good_clip_rows_are_those_of_a_run_on_it_alone(robustness_run, synthetic_weights, tmp_path):
    base, _, _, _ = robustness_run
    good = str(base / "corpus" / "good.mp4")
    checkpoint, backbone = synthetic_weights
    run(["--input", good, "--output", str(tmp_path / "alone"), "--checkpoint", str(checkpoint),
         "--backbone", str(backbone), *FLAGS])
    alone = pq.read_table(tmp_path / "alone" / "frames").sort_by([(key, "ascending") for key in FRAME_KEYS])
    frames = pq.read_table(base / "out" / "frames")
    mixed = frames.filter(pc.equal(frames["video_uri"], good)).sort_by(
        [(key, "ascending") for key in FRAME_KEYS])
    assert alone.num_rows > 0 and mixed.num_rows == alone.num_rows
    for column in alone.column_names:
        if pa.types.is_floating(alone.schema.field(column).type):
            np.testing.assert_allclose(mixed[column].to_numpy(), alone[column].to_numpy(), rtol=0, atol=1e-6,
                                       err_msg=column)
        else:
            assert mixed[column].equals(alone[column]), column

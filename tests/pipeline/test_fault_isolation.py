"""``mimamo run`` on a folder of good clips beside videos with real faults (issue 18): a decoder that dies with
SIGSEGV, one that hangs, and a real 8192x8192 H.264 file. Each bad video gets its own ``failed`` row naming the
cause, the good videos' rows are exactly those of a clean run, and the run ends with status 3.

The faults are injected into the decoder's ``av.open`` by ``tests/pipeline/faults/sitecustomize.py`` (on
``PYTHONPATH``, so it loads in the face stage's child process too): the crash strikes when the decoder opens the
file after the probe, the hang when the probe opens it. Every run is a real subprocess in a session of its own,
whose processes are all killed when the test ends, also on failure.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Dict, List

import av
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests import clips

REPO_ROOT = Path(__file__).resolve().parents[2]
FAULTS_DIR = Path(__file__).resolve().parent / "faults"
FLAGS = ["--length", "16", "--stride", "16", "--compute_batch_size", "8", "--smoothing_size", "0.2"]
FRAME_KEYS = ["video_uri", "face_id", "frame_index"]
GOOD = ("good_a.mp4", "good_b.mp4", "good_c.mp4")
FAULTS = "crash.mp4=segv@2;hang.mp4=hang@1"
STALL_S = 10  # above the slowest first frame of a fresh face stage on a busy 2-core machine
RUN_TIMEOUT_S = 900


def huge_clip(path: Path, side_px: int = 8192, n_frames: int = 2) -> Path:
    """A real H.264 video of ``n_frames`` flat ``side_px`` x ``side_px`` frames (about 200 kB at 8192)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width = stream.height = side_px
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "40"}
        frame = av.VideoFrame(side_px, side_px, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        for index in range(n_frames):
            frame.pts, frame.time_base = index, Fraction(1, 30)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def session_pids(session: int) -> List[int]:
    """Processes of a session (``/proc/<pid>/stat``, the field after the process group)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and int(fields[3]) == session:
            pids.append(int(entry.name))
    return pids


def run_mimamo(args: List[str], env_extra: Dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """Runs ``mimamo ARGS`` in a session of its own; kills whatever is left of that session afterwards (the face
    stage's process has a process group of its own in that session).

    Returns the completed process with ``lingering``: the processes of the session still alive 5 s after the run
    ended.
    """
    env = dict(os.environ, **env_extra, PYTHONUTF8="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAULTS_DIR), str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    process = subprocess.Popen([sys.executable, "-m", "beam_pipeline.cli", *args], env=env, cwd=str(cwd),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8",
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
        deadline = time.monotonic() + 5.0
        while session_pids(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        lingering = session_pids(process.pid)
    finally:
        for pid in session_pids(process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    done.lingering = lingering
    return done


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faults") / "corpus"
    folder.mkdir()
    clips.moving_face_clip(folder / GOOD[0], n_frames=24)
    for name in GOOD[1:] + ("crash.mp4", "hang.mp4"):
        shutil.copy(folder / GOOD[0], folder / name)
    huge_clip(folder / "huge.mp4")
    return folder


def weight_flags(synthetic_weights) -> List[str]:
    checkpoint, backbone = synthetic_weights
    return ["--checkpoint", str(checkpoint), "--backbone", str(backbone)]


@pytest.fixture(scope="module")
def faulty_run(corpus, synthetic_weights, tmp_path_factory):
    output = tmp_path_factory.mktemp("faulty") / "out"
    done = run_mimamo(["run", str(corpus), "--output", str(output), "--stall_timeout_s", str(STALL_S),
                       *weight_flags(synthetic_weights), *FLAGS], {"MIMAMO_FAULTS": FAULTS}, corpus.parent)
    return output, done


@pytest.fixture(scope="module")
def clean_output(corpus, synthetic_weights, tmp_path_factory) -> Path:
    """The good clips alone, without faults."""
    output = tmp_path_factory.mktemp("clean") / "out"
    done = run_mimamo(["run", *(str(corpus / name) for name in GOOD), "--output", str(output),
                       *weight_flags(synthetic_weights), *FLAGS], {}, corpus.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    return output


def videos_by_name(output: Path) -> Dict[str, dict]:
    return {Path(row["video_uri"]).name: row for row in pq.read_table(output / "videos").to_pylist()}


def test_the_run_ends_with_status_3_and_leaves_no_process_behind(faulty_run):
    _, done = faulty_run
    assert done.returncode == 3, done.stdout + done.stderr
    assert "3 input(s) failed" in done.stdout, done.stdout
    assert done.lingering == []


def test_every_video_has_one_row_and_the_good_ones_are_ok(faulty_run, corpus):
    output, _ = faulty_run
    rows = pq.read_table(output / "videos").to_pylist()
    assert sorted(row["video_uri"] for row in rows) == sorted(str(path) for path in corpus.iterdir())
    by_name = videos_by_name(output)
    assert [by_name[name]["status"] for name in GOOD] == ["ok"] * len(GOOD)


def test_a_decoder_crash_fails_that_video_naming_sigsegv(faulty_run, corpus):
    row = videos_by_name(faulty_run[0])["crash.mp4"]
    assert (row["status"], row["error_stage"]) == ("failed", "faces"), row
    assert row["error"] == f"FaceStageError: {corpus / 'crash.mp4'}: face stage crashed: SIGSEGV (before the first " \
                           "frame)", row


def test_a_hanging_decoder_fails_that_video_after_the_stall_timeout(faulty_run, corpus):
    row = videos_by_name(faulty_run[0])["hang.mp4"]
    assert (row["status"], row["error_stage"]) == ("failed", "probe"), row
    assert row["error"] == f"FaceStageError: {corpus / 'hang.mp4'}: no new frame for {STALL_S} s (while probing); " \
                           "the face stage process was stopped", row


def test_an_8192x8192_video_fails_on_its_frame_size(faulty_run, corpus):
    row = videos_by_name(faulty_run[0])["huge.mp4"]
    assert (row["status"], row["error_stage"]) == ("failed", "probe"), row
    assert row["error"] == f"VideoError: {corpus / 'huge.mp4'}: frame 8192x8192 over the limit of 10000000 pixels " \
                           "(67108864 pixels)", row


def assert_good_rows_equal_clean_run(output: Path, clean_output: Path, corpus: Path) -> None:
    """The good clips' ``frames/`` and ``videos/`` rows under ``output`` are exactly those under ``clean_output``."""
    frames = pq.read_table(output / "frames")
    good_uris = [str(corpus / name) for name in GOOD]
    mixed = frames.filter(pc.is_in(frames["video_uri"], value_set=pc.cast(good_uris, frames["video_uri"].type)))
    clean = pq.read_table(clean_output / "frames")
    order = [(key, "ascending") for key in FRAME_KEYS]
    assert clean.num_rows > 0 and set(clean["video_uri"].to_pylist()) == set(good_uris)
    assert mixed.sort_by(order).equals(clean.sort_by(order))
    clean_videos = videos_by_name(clean_output)
    assert {name: videos_by_name(output)[name] for name in GOOD} == clean_videos


def test_the_good_videos_rows_are_exactly_those_of_a_clean_run(faulty_run, clean_output, corpus):
    assert_good_rows_equal_clean_run(faulty_run[0], clean_output, corpus)


def test_in_process_a_decoder_crash_kills_the_whole_run(corpus, synthetic_weights, tmp_path):
    """What the isolation prevents: with --face_stage_in_process the crash takes the run down, no table written."""
    output = tmp_path / "out"
    done = run_mimamo(["run", str(corpus / GOOD[0]), str(corpus / "crash.mp4"), "--output", str(output),
                       "--face_stage_in_process", *weight_flags(synthetic_weights), *FLAGS],
                      {"MIMAMO_FAULTS": FAULTS}, tmp_path)
    assert done.returncode == -signal.SIGSEGV, done.stdout + done.stderr
    assert not list(output.glob("videos/*.parquet"))

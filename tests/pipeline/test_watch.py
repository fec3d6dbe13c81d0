"""Watch mode: new videos run once, a restart never reruns them, growing files wait, Ctrl-C stops cleanly.

Two watch sessions share one inbox and one output (the real face stage and seeded networks, two pipeline runs):

* session 1, scan by scan: an empty inbox; then ``a.mp4`` arrives whole while ``b.mp4`` is being copied in;
  ``b.mp4`` keeps growing while ``a.mp4`` is processed;
* session 2 (a restart, ``FolderWatcher.run``): ``b.mp4`` is complete and ``c.mp4`` arrives; Ctrl-C is pressed
  while ``b.mp4`` is processed.
"""
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.commits import COMMITS_DIR
from beam_pipeline.rows import compute_video_id
from beam_pipeline.run import run_pipeline
from beam_pipeline.watch import FolderWatcher
from tests import clips

CLIP_FRAMES = 20
VALUE_COLUMNS = ["frame_index", "timestamp_s", "valence", "arousal", "valence_smoothed", "arousal_smoothed"]


def watch_options(inbox: Path, output: Path, weights, interval_s: float = 0.05) -> PipelineOptions:
    checkpoint, backbone = weights
    return PipelineOptions([
        "--watch", f"--watch_interval={interval_s}", "--input", str(inbox), "--output", str(output),
        "--checkpoint", str(checkpoint), "--backbone", str(backbone), "--length", "16", "--stride", "16",
        "--compute_batch_size", "8",
    ])


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("source") / "clip.mp4"
    clips.moving_face_clip(path, n_frames=CLIP_FRAMES)
    return path.read_bytes()


@pytest.fixture(scope="module")
def sessions(tmp_path_factory, synthetic_weights, clip_bytes) -> Dict[str, object]:
    """Runs both sessions and records what each scan did."""
    inbox, output = tmp_path_factory.mktemp("inbox"), tmp_path_factory.mktemp("watch-out")
    a, b, c = (inbox / name for name in ("a.mp4", "b.mp4", "c.mp4"))
    options = watch_options(inbox, output, synthetic_weights)
    record: Dict[str, object] = {"inbox": inbox, "output": output, "a": str(a), "b": str(b), "c": str(c)}

    first = FolderWatcher(options, run_pipeline)
    record["scan_empty"] = first.scan_once()
    a.write_bytes(clip_bytes)
    third = len(clip_bytes) // 3
    b.write_bytes(clip_bytes[:third])
    record["scan_first_sight"] = first.scan_once()
    with open(b, "ab") as stream:
        stream.write(clip_bytes[third:2 * third])
    record["scan_a_stable"] = first.scan_once()
    record["processed_after_session_1"] = first.processed
    with open(b, "ab") as stream:
        stream.write(clip_bytes[2 * third:])
    c.write_bytes(clip_bytes)

    calls: List[List[str]] = []

    def run_and_press_ctrl_c(batch_options: PipelineOptions):
        calls.append(list(batch_options.get_all_options()["input"]))
        signal.raise_signal(signal.SIGINT)  # Ctrl-C while this video is processed
        return run_pipeline(batch_options)

    handler_before = signal.getsignal(signal.SIGINT)
    second = FolderWatcher(options, run_and_press_ctrl_c)
    record["processed_at_restart"] = second.processed
    record["report"] = second.run()
    record["calls"] = calls
    record["handler_restored"] = signal.getsignal(signal.SIGINT) is handler_before
    record["processed_after_session_2"] = second.processed
    return record


def rows_of(output: Path, uri: str) -> pa.Table:
    frames = pq.read_table(output / "frames")
    return frames.filter(pc.equal(frames["video_uri"], uri)).sort_by("frame_index")


def test_a_video_added_while_watching_is_processed_once(sessions):
    assert sessions["scan_empty"] == [] and sessions["scan_first_sight"] == []
    assert sessions["scan_a_stable"] == [sessions["a"]]
    videos = pq.read_table(sessions["output"] / "videos").to_pylist()
    assert sorted((row["video_uri"], row["status"]) for row in videos) == [(sessions["a"], "ok"),
                                                                           (sessions["b"], "ok")]
    a_rows = rows_of(sessions["output"], sessions["a"])
    assert a_rows.num_rows == len(set(a_rows["frame_index"].to_pylist())) == CLIP_FRAMES
    assert set(a_rows["video_id"].to_pylist()) == {compute_video_id(sessions["a"])}


def test_a_restart_does_not_reprocess_a_video_with_results(sessions):
    assert sessions["processed_at_restart"] == {compute_video_id(sessions["a"])}
    assert sessions["calls"] == [[sessions["b"]]]


def test_a_partly_written_video_waits_until_it_stops_growing(sessions):
    assert compute_video_id(sessions["b"]) not in sessions["processed_after_session_1"]
    a_rows, b_rows = rows_of(sessions["output"], sessions["a"]), rows_of(sessions["output"], sessions["b"])
    # b.mp4 ends up with the same bytes as a.mp4: it was processed whole, not from a truncated copy
    assert b_rows.num_rows == CLIP_FRAMES and b_rows.select(VALUE_COLUMNS).equals(a_rows.select(VALUE_COLUMNS))


def test_ctrl_c_stops_after_the_current_video_and_restores_the_handler(sessions):
    report = sessions["report"]
    assert report.interrupted and report.videos == [sessions["b"]] and report.batches == 1
    assert compute_video_id(sessions["c"]) not in sessions["processed_after_session_2"]
    assert sessions["handler_restored"]


def test_watch_output_has_the_tables_of_a_normal_run(sessions):
    output: Path = sessions["output"]
    assert sorted(path.name for path in output.iterdir()) == [COMMITS_DIR, "frames", "videos"]
    assert len(list((output / COMMITS_DIR).iterdir())) == 2  # a.mp4 and b.mp4, one folder each
    for table in ("frames", "videos"):
        assert sorted(path.name for path in (output / table).iterdir()) == ["part-00000-of-00001.parquet"]


def test_mimamo_run_watch_exits_cleanly_on_ctrl_c(tmp_path, synthetic_weights):
    inbox, output = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    checkpoint, backbone = synthetic_weights
    command = [sys.executable, "-m", "beam_pipeline.cli", "run", str(inbox), "--output", str(output), "--watch",
               "--watch-interval", "0.2", "--checkpoint", str(checkpoint), "--backbone", str(backbone), "--log"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # pylint: disable=consider-using-with
    deadline = time.monotonic() + 120
    seen = ""
    while "watching" not in seen:
        line = process.stderr.readline()
        assert line or process.poll() is None, f"exited early: {seen}"
        assert time.monotonic() < deadline, "no 'watching' log line"
        seen += line
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "watch stopped: 0 video(s) in 0 batch(es)" in out

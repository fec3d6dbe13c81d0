"""A local run killed with SIGKILL at several points and started again ends with an uninterrupted run's tables.

Four short clips (a corrupt file, two faces clips, one without a face) run as ``python -m beam_pipeline.run``
with the real face stage and the seeded networks, one pipeline per attempt that commits each video under
``_videos/``. The kill points are found by polling the output, never by sleeping: before the first video commits
(``_run.json`` is written just before the pipeline starts), between videos (two committed), during the last
(three committed). Each attempt is the same command; the fourth one runs to the end. (A kill while the tables are
compacted is mended as ``test_compaction.py`` shows.)
"""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beam_pipeline.commits import COMMITS_DIR, RECORD_FILE, commit_video_result, data_file_name
from beam_pipeline.locks import LOCK_DIR
from beam_pipeline.resume import RUN_MANIFEST, RunPlan, prepare_output
from beam_pipeline.rows import VideoResult, compute_video_id, failed_video_row
from beam_pipeline.run import run
from beam_pipeline.sinks import VIDEOS_SCHEMA
from tests import clips

CLIP_FRAMES = 16
SIZE = (320, 240)
NAMES = ("a_corrupt.mp4", "b_face.mp4", "c_no_face.mp4", "d_face.mp4")  # the run takes them in this order
FRAMES_KEY = ["video_uri", "face_id", "frame_index"]
ATTEMPT_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("resume-clips")
    clips.corrupt_file(folder / NAMES[0])
    clips.moving_face_clip(folder / NAMES[1], n_frames=CLIP_FRAMES, size=SIZE)
    clips.no_face_clip(folder / NAMES[2], n_frames=CLIP_FRAMES, size=SIZE)
    clips.moving_face_clip(folder / NAMES[3], n_frames=CLIP_FRAMES + 4, size=SIZE)
    return folder


def flags(clip_dir: Path, output: Path, weights, length: int = 8) -> List[str]:
    checkpoint, backbone = weights
    return ["--input", str(clip_dir), "--output", str(output), "--checkpoint", str(checkpoint), "--backbone",
            str(backbone), "--length", str(length), "--stride", str(length), "--compute_batch_size", "8"]


def committed(output: Path) -> int:
    """Videos whose rows are committed (their record under _videos/)."""
    return len(list((output / COMMITS_DIR).glob(f"*/{RECORD_FILE}")))


def start(arguments: List[str]) -> subprocess.Popen:
    return subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-m", "beam_pipeline.run", *arguments], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)


def kill_when(process: subprocess.Popen, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + ATTEMPT_TIMEOUT_S
    while not condition():
        assert process.poll() is None, f"the run ended before the kill point: {process.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "the kill point never came"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL


def read_sorted(directory: Path, keys: List[str]) -> pa.Table:
    return pq.read_table(directory).sort_by([(key, "ascending") for key in keys])


def leftovers(output: Path) -> List[str]:
    return sorted(str(path.relative_to(output)) for path in output.rglob("*")
                  if path.name.startswith("beam-temp-") or path.name == LOCK_DIR or path.suffix == ".tmp")


@pytest.fixture(scope="module")
def killed_and_resumed(clip_dir, synthetic_weights, tmp_path_factory):
    """Runs the kill sequence; records the committed count after each kill."""
    output = tmp_path_factory.mktemp("resumed") / "out"
    arguments = flags(clip_dir, output, synthetic_weights)
    after_kills = []

    first = start(arguments)  # 1. before the first video commits
    kill_when(first, lambda: (output / RUN_MANIFEST).is_file())
    after_kills.append(committed(output))

    second = start(arguments)  # 2. between videos
    kill_when(second, lambda: committed(output) >= 2)
    after_kills.append(committed(output))

    third = start(arguments)  # 3. during the last video
    kill_when(third, lambda: committed(output) >= 3)
    after_kills.append(committed(output))

    last = start(arguments)
    _, err = last.communicate(timeout=ATTEMPT_TIMEOUT_S)
    assert last.returncode == 3, err[-3000:]  # the tables hold the corrupt file's failure, whoever committed it
    return output, after_kills


@pytest.fixture(scope="module")
def uninterrupted(clip_dir, synthetic_weights, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("uninterrupted") / "out"
    run(flags(clip_dir, output, synthetic_weights))
    return output


def test_each_kill_landed_where_intended(killed_and_resumed):
    _, after_kills = killed_and_resumed
    assert after_kills == [0, 2, 3]


def test_the_resumed_run_has_exactly_the_rows_of_an_uninterrupted_run(killed_and_resumed, uninterrupted, clip_dir):
    output, _ = killed_and_resumed
    videos = read_sorted(output / "videos", ["video_uri"])
    assert videos["video_uri"].to_pylist() == [str(clip_dir / name) for name in NAMES]  # no duplicates, no gaps
    assert [row["status"] for row in videos.to_pylist()] == ["failed", "ok", "no_face", "ok"]
    assert videos.equals(read_sorted(uninterrupted / "videos", ["video_uri"]))
    frames = read_sorted(output / "frames", FRAMES_KEY)
    keys = list(zip(*(frames[column].to_pylist() for column in FRAMES_KEY)))
    assert len(keys) == len(set(keys)) == (CLIP_FRAMES + CLIP_FRAMES + 4) > 0  # one face in each face clip
    assert frames.equals(read_sorted(uninterrupted / "frames", FRAMES_KEY))


def test_no_temporary_file_or_lock_is_left(killed_and_resumed, uninterrupted):
    output, _ = killed_and_resumed
    assert leftovers(output) == [] and leftovers(uninterrupted) == []
    for folder in (output, uninterrupted):
        assert sorted(path.name for path in folder.iterdir()) == sorted([COMMITS_DIR, RUN_MANIFEST, "frames", "videos"])
        assert [path.name for path in (folder / "frames").iterdir()] == ["part-00000-of-00001.parquet"]


def commit_stamps(output: Path):
    return {str(path): path.stat().st_mtime_ns for path in (output / COMMITS_DIR).rglob("*")}


def test_a_finished_run_started_again_runs_no_video_and_rebuilds_the_same_tables(uninterrupted, clip_dir,
                                                                                   synthetic_weights):
    before = commit_stamps(uninterrupted)
    tables = {table: read_sorted(uninterrupted / table, ["video_uri"]) for table in ("videos", "frames")}

    result = run(flags(clip_dir, uninterrupted, synthetic_weights))

    counters = {item.key.metric.name: item.committed for item in result.metrics().query()["counters"]}
    assert len(result.plan.committed) == len(NAMES) and "videos_committed" not in counters
    assert counters["table_videos_ok"] == 2 and counters["table_videos_failed"] == 1
    assert commit_stamps(uninterrupted) == before
    for table, expected in tables.items():
        assert read_sorted(uninterrupted / table, ["video_uri"]).equals(expected), table


def test_the_same_run_with_the_output_spelt_differently_is_recognised(uninterrupted, clip_dir, synthetic_weights):
    arguments = flags(clip_dir, uninterrupted, synthetic_weights)
    arguments[arguments.index("--output") + 1] = f"{uninterrupted}/"

    assert len(run(arguments + ["--n_workers", "1", "--videos_per_commit", "4"]).plan.committed) == len(NAMES)


def test_other_options_on_an_output_with_results_are_refused_in_one_line(uninterrupted, clip_dir,
                                                                          synthetic_weights):
    with pytest.raises(ValueError) as raised:
        run(flags(clip_dir, uninterrupted, synthetic_weights, length=16))
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"--output={str(uninterrupted)!r} holds results of a run with other options")
    assert "--length 8 -> 16" in message and "--stride 8 -> 16" in message


def test_an_output_of_a_run_that_cannot_be_resumed_is_refused(tmp_path, clip_dir, synthetic_weights):
    output = tmp_path / "old"
    (output / "videos").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"video_uri": "/v/x.mp4", "video_id": compute_video_id("/v/x.mp4"),
                                          "status": "ok"}], schema=VIDEOS_SCHEMA),
                   output / "videos" / "part-00000-of-00001.parquet")
    with pytest.raises(ValueError, match=f"no {RUN_MANIFEST}"):
        run(flags(clip_dir, output, synthetic_weights))


def test_a_rerun_runs_again_transient_failures_and_unfinished_videos_and_skips_the_rest(tmp_path):
    output = str(tmp_path)
    done = commit_video_result(output, VideoResult.of_row(failed_video_row("/v/corrupt.mp4", "probe", "VideoError: x")))
    retry = commit_video_result(output, VideoResult.of_row(failed_video_row(
        "/v/flaky.mp4", "read", "ServiceUnavailable: 503", error_kind="transient")))
    unfinished = tmp_path / COMMITS_DIR / compute_video_id("/v/killed.mp4")
    unfinished.mkdir()
    (unfinished / data_file_name("frames", 3)).write_bytes(b"frames of a video killed before its record")
    (unfinished / ".video.parquet.x1y2.tmp").write_bytes(b"half a record")
    manifest = {"mimamo.version": "test", "options": {"length": 8}}
    (tmp_path / RUN_MANIFEST).write_text(json.dumps(manifest))

    plan = prepare_output(output, manifest)

    assert plan == RunPlan(frozenset({done.video_id}), retried=1, unfinished=1)
    assert sorted(str(path.relative_to(tmp_path)) for path in (tmp_path / COMMITS_DIR).rglob("*")
                  if path.is_file()) == [f"{COMMITS_DIR}/{done.video_id}/{RECORD_FILE}"]
    assert retry.video_id not in {path.name for path in (tmp_path / COMMITS_DIR).iterdir() if any(path.iterdir())}

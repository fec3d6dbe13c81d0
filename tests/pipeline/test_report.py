"""``mimamo report`` and the DuckDB queries over a run's ``frames``/``videos`` Parquet tables."""
import argparse
from pathlib import Path
from typing import Dict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beam_pipeline.cli.commands import report as report_command
from beam_pipeline.cli.report import (
    build_run_report,
    count_frames_per_face,
    count_videos_by_status,
    find_video,
    format_run_report,
    list_failures,
    open_run,
    read_face_series,
    summarise_videos,
)
from beam_pipeline.rows import FrameRow, compute_video_id
from beam_pipeline.sinks import FRAMES_SCHEMA, VIDEOS_SCHEMA

FPS = 30.0
ONE_FACE_FRAMES = np.array([*range(0, 10), *range(15, 30)])  # frames 10..14: no face
TWO_FACES_FRAMES = np.arange(20)


def _face_rows(uri: str, face_id: int, frames: np.ndarray, valence: float, arousal: float) -> pa.Table:
    count = len(frames)
    raw = np.tile(np.float32([valence, arousal]), (count, 1))
    smoothed = raw + np.float32(0.01) * np.arange(count, dtype=np.float32)[:, None]
    boxes = np.tile(np.float32([100, 50, 180, 150]), (count, 1)) + np.float32(face_id * 200)
    rows = [FrameRow(uri, compute_video_id(uri), face_id, face_id, "new", frame, frame / FPS, *raw[i].tolist(),
                     *smoothed[i].tolist(), *boxes[i].tolist(), 0.9)._asdict() for i, frame in enumerate(frames.tolist())]
    return pa.Table.from_pylist(rows, schema=FRAMES_SCHEMA)


def _video_row(uri: str, status: str, **fields) -> Dict[str, object]:
    row = {name: None for name in VIDEOS_SCHEMA.names}
    row.update(video_uri=uri, video_id=compute_video_id(uri), status=status, **fields)
    return row


def write_run_tables(output: Path, one_face_uri: str, two_faces_uri: str, with_frames: bool = True) -> Path:
    """Writes a small run: one face with a gap, two faces, a failed video and one without a face.

    Frames go into two shards, as a sharded Beam write leaves them. Raw values are constant per face:
    one face (0.5, -0.25); two faces: face 0 (0.2, 0.4), face 1 (-0.6, 0.0).
    """
    (output / "videos").mkdir(parents=True)
    videos = [
        _video_row(one_face_uri, "ok", duration_s=1.0, fps=FPS, frame_count=30, faces_found=1, frames_with_face=25,
                   mean_valence=0.5, mean_arousal=-0.25),
        _video_row(two_faces_uri, "ok", duration_s=0.8, fps=FPS, frame_count=24, faces_found=2, frames_with_face=40,
                   mean_valence=-0.2, mean_arousal=0.2),
        _video_row("/clips/corrupt.mp4", "failed", error_stage="read",
                   error="VideoError: /clips/corrupt.mp4: no video stream (streams: none)\nwhile probing"),
        _video_row("/clips/no_face.mp4", "no_face", duration_s=1.0, fps=FPS, frame_count=30, faces_found=0,
                   frames_with_face=0),
    ]
    pq.write_table(pa.Table.from_pylist(videos[:2], schema=VIDEOS_SCHEMA), output / "videos" / "part-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(videos[2:], schema=VIDEOS_SCHEMA), output / "videos" / "part-00001-of-00002.parquet")
    if with_frames:
        (output / "frames").mkdir()
        pq.write_table(_face_rows(one_face_uri, 0, ONE_FACE_FRAMES, 0.5, -0.25),
                       output / "frames" / "part-00000-of-00002.parquet")
        pq.write_table(pa.concat_tables([_face_rows(two_faces_uri, 1, TWO_FACES_FRAMES, -0.6, 0.0),
                                         _face_rows(two_faces_uri, 0, TWO_FACES_FRAMES, 0.2, 0.4)]),
                       output / "frames" / "part-00001-of-00002.parquet")
    return output


@pytest.fixture()
def run_output(tmp_path) -> Path:
    return write_run_tables(tmp_path / "run", "/clips/one_face.mp4", "/clips/two_faces.mp4")


def test_videos_are_counted_by_status(run_output):
    with open_run(str(run_output)) as connection:
        assert count_videos_by_status(connection) == [("ok", 2), ("failed", 1), ("no_face", 1)]


def test_failures_carry_their_stage_and_reason(run_output):
    with open_run(str(run_output)) as connection:
        failures = list_failures(connection)
    assert [(f.video_uri, f.error_stage) for f in failures] == [("/clips/corrupt.mp4", "read")]
    assert "no video stream" in failures[0].error


def test_frames_are_counted_per_face_with_first_and_last_time(run_output):
    with open_run(str(run_output)) as connection:
        counts = count_frames_per_face(connection)
    assert [(c.video_uri, c.face_id, c.frames) for c in counts] == [
        ("/clips/one_face.mp4", 0, 25), ("/clips/two_faces.mp4", 0, 20), ("/clips/two_faces.mp4", 1, 20)]
    assert counts[0].first_s == pytest.approx(0.0) and counts[0].last_s == pytest.approx(29 / FPS)


def test_video_means_average_every_face_row(run_output):
    with open_run(str(run_output)) as connection:
        means = {m.video_uri: m for m in summarise_videos(connection)}
    assert means["/clips/one_face.mp4"].mean_valence == pytest.approx(0.5, abs=1e-6)
    assert means["/clips/one_face.mp4"].mean_arousal == pytest.approx(-0.25, abs=1e-6)
    assert means["/clips/two_faces.mp4"].mean_valence == pytest.approx(-0.2, abs=1e-6)
    assert means["/clips/two_faces.mp4"].mean_arousal == pytest.approx(0.2, abs=1e-6)
    assert (means["/clips/two_faces.mp4"].faces, means["/clips/two_faces.mp4"].frames_with_face) == (2, 40)
    no_face = means["/clips/no_face.mp4"]
    assert (no_face.faces, no_face.frames_with_face, no_face.mean_valence) == (0, 0, None)
    assert means["/clips/corrupt.mp4"].status == "failed"


def test_face_series_come_back_per_face_sorted_with_gaps_and_boxes(run_output):
    with open_run(str(run_output)) as connection:
        one_face = read_face_series(connection, compute_video_id("/clips/one_face.mp4"))
        two_faces = read_face_series(connection, compute_video_id("/clips/two_faces.mp4"))
        none = read_face_series(connection, compute_video_id("/clips/no_face.mp4"))
    assert none == [] and [s.face_id for s in two_faces] == [0, 1]
    (track,) = one_face
    np.testing.assert_array_equal(track.frame_indices, ONE_FACE_FRAMES)
    np.testing.assert_allclose(track.timestamps_s, ONE_FACE_FRAMES / FPS)
    assert track.valence_arousal.dtype == np.float32 and track.valence_arousal.shape == (25, 2)
    np.testing.assert_allclose(track.smoothed_valence_arousal[:, 0], 0.5 + 0.01 * np.arange(25), atol=1e-6)
    np.testing.assert_array_equal(two_faces[1].boxes_px[0], np.float32([300, 250, 380, 350]))


def test_a_video_is_found_by_id_uri_or_unique_file_name(run_output):
    with open_run(str(run_output)) as connection:
        video_id = compute_video_id("/clips/two_faces.mp4")
        assert find_video(connection, video_id).video_uri == "/clips/two_faces.mp4"
        assert find_video(connection, "/clips/two_faces.mp4").video_id == video_id
        assert find_video(connection, "no_face.mp4").status == "no_face"
        with pytest.raises(ValueError, match="no video of this run"):
            find_video(connection, "missing.mp4")


def test_report_text_lists_statuses_failures_faces_and_means(run_output):
    text = format_run_report(build_run_report(str(run_output)))
    assert f"Run {run_output}: 4 videos (ok 2, failed 1, no_face 1)" in text
    lines = text.splitlines()
    failure_line = next(line for line in lines if line.startswith("/clips/corrupt.mp4  read"))
    assert failure_line.endswith("no video stream (streams: none) while probing")  # one line per failure
    assert any(line.split() == ["/clips/two_faces.mp4", "1", "20", "0.000", "0.633"] for line in lines)
    assert any(line.split() == ["/clips/one_face.mp4", "ok", "1", "25", "0.500", "-0.250"] for line in lines)
    assert any(line.split() == ["/clips/no_face.mp4", "no_face", "0", "0", "-", "-"] for line in lines)


def test_run_without_frames_files_reports_no_face_rows(tmp_path):
    output = write_run_tables(tmp_path / "run", "/a.mp4", "/b.mp4", with_frames=False)
    report = build_run_report(str(output))
    assert report.face_counts == [] and all(m.frames_with_face == 0 for m in report.video_means)


def test_folder_that_is_not_a_run_output_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no videos/\\*.parquet"):
        open_run(str(tmp_path))


def test_report_command_prints_the_report(run_output, capsys):
    parser = argparse.ArgumentParser()
    report_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(run_output)])
    assert args.handler(args, []) == 0
    assert capsys.readouterr().out == format_run_report(build_run_report(str(run_output)))

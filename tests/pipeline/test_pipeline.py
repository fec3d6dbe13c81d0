"""End to end: real clips, the real face stage, real (synthetic-weight) networks, real Parquet.

One module-scoped run is shared by most tests; the reruns (second run, multi-processing, PortableRunner) check
that the rows do not depend on how the pipeline is executed.
"""
import contextlib
import json
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

import apache_beam as beam
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beam_pipeline.cli import main as cli
from beam_pipeline.pipeline import build_pipeline
from beam_pipeline.run import run
from mimamo_ops import __version__
from mimamo_ops.faces.records import FaceConfig
from mimamo_ops.faces.stages import make_face_extractor
from mimamo_ops.model.checkpoints import sha256_file
from mimamo_ops.outputs.smoothing import smooth_moving_average
from tests.local_servers import free_port, serve

SMOOTHING_S = 0.2  # 6 frames at 30 fps
KEY_COLUMNS = ["video_uri", "face_id", "frame_index"]
VALUE_COLUMNS = ["valence", "arousal", "valence_smoothed", "arousal_smoothed"]


def pipeline_flags(clip_folder: Path, weights: Tuple[Path, Path], output: Path) -> List[str]:
    checkpoint, backbone = weights
    return [
        "--input", str(clip_folder), "--output", str(output), "--checkpoint", str(checkpoint),
        "--backbone", str(backbone), "--multi_face", "--length", "16", "--stride", "16",
        "--smoothing_size", str(SMOOTHING_S), "--compute_batch_size", "8",
    ]


def read_sorted(directory: Path, sort_by: List[str]) -> pa.Table:
    return pq.read_table(directory).sort_by([(column, "ascending") for column in sort_by])


@pytest.fixture(scope="module")
def first_frames(first_run) -> pa.Table:
    return read_sorted(first_run[0] / "frames", KEY_COLUMNS)


@pytest.fixture(scope="module")
def detected_faces(clip_folder) -> Set[Tuple[str, int, int]]:
    """(uri, face_id, frame_index) of every face the real face stage finds, run directly on the good clips."""
    extractor = make_face_extractor(FaceConfig(multi_face=True))
    found = set()
    for name in ("one_face.mp4", "two_faces.mp4", "no_face.mp4"):
        uri = str(clip_folder / name)
        for frame in extractor.extract(uri):
            found.update((uri, face.face_id, face.frame_index) for face in frame.faces)
    return found


def assert_same_rows(expected: pa.Table, actual: pa.Table, atol: float = 0.0) -> None:
    assert actual.num_rows == expected.num_rows
    for column in expected.column_names:
        if column in VALUE_COLUMNS:
            np.testing.assert_allclose(actual[column].to_numpy(), expected[column].to_numpy(), rtol=0, atol=atol,
                                       err_msg=column)
        else:
            assert actual[column].equals(expected[column]), column


def test_frames_has_one_row_per_video_face_and_frame_with_a_face(first_frames, detected_faces, clip_folder):
    keys = list(zip(first_frames["video_uri"].to_pylist(), first_frames["face_id"].to_pylist(),
                    first_frames["frame_index"].to_pylist()))
    assert len(keys) == len(set(keys))
    assert set(keys) == detected_faces
    faces_per_video = {uri: {face for u, face, _ in keys if u == uri} for uri, _, _ in keys}
    assert faces_per_video == {str(clip_folder / "one_face.mp4"): {0}, str(clip_folder / "two_faces.mp4"): {0, 1}}


def columns(table: pa.Table) -> Dict[str, np.ndarray]:
    return {name: table[name].to_numpy(zero_copy_only=False) for name in table.column_names}


def test_frame_rows_carry_true_frame_times_boxes_and_smoothing(first_frames):
    rows = columns(first_frames)
    np.testing.assert_allclose(rows["timestamp_s"], rows["frame_index"] / 30.0, atol=1e-6)
    assert (rows["box_x1_px"] > rows["box_x0_px"]).all() and (rows["box_y1_px"] > rows["box_y0_px"]).all()
    assert ((rows["confidence"] >= 0) & (rows["confidence"] <= 1)).all()
    assert all(np.isfinite(rows[name]).all() for name in VALUE_COLUMNS)
    tracks = sorted(set(zip(rows["video_uri"], rows["face_id"])))
    assert len(tracks) == 3
    for uri, face_id in tracks:
        mine = (rows["video_uri"] == uri) & (rows["face_id"] == face_id)
        raw = np.stack([rows["valence"][mine], rows["arousal"][mine]], 1)
        smoothed = np.stack([rows["valence_smoothed"][mine], rows["arousal_smoothed"][mine]], 1)
        np.testing.assert_allclose(smoothed, smooth_moving_average(raw, 6), atol=1e-6)
        assert raw.std(axis=0).min() > 0  # the network really reacts to the faces


def test_videos_has_every_input_with_status_and_readable_error(first_run, first_frames, clip_folder):
    videos = {row["video_uri"]: row for row in pq.read_table(first_run[0] / "videos").to_pylist()}
    assert set(videos) == {str(clip_folder / name) for name in
                           ("one_face.mp4", "two_faces.mp4", "corrupt.mp4", "empty.mp4", "no_face.mp4")}
    status = {Path(uri).name: row["status"] for uri, row in videos.items()}
    assert status == {"one_face.mp4": "ok", "two_faces.mp4": "ok", "corrupt.mp4": "failed",
                      "empty.mp4": "failed", "no_face.mp4": "no_face"}
    for name in ("corrupt.mp4", "empty.mp4"):
        row = videos[str(clip_folder / name)]
        assert row["error_stage"] == "probe"
        assert row["error"].startswith("VideoError: ") and name in row["error"]
    assert "empty file" in videos[str(clip_folder / "empty.mp4")]["error"]
    two = videos[str(clip_folder / "two_faces.mp4")]
    assert two["faces_found"] == 2 and two["frame_count"] == 24 and two["fps"] == 30.0
    assert abs(two["duration_s"] - 24 / 30.0) < 1e-6
    rows = columns(first_frames)
    for name in ("one_face.mp4", "two_faces.mp4"):
        row, uri = videos[str(clip_folder / name)], str(clip_folder / name)
        mine = rows["video_uri"] == uri
        assert row["frames_with_face"] == len(set(rows["frame_index"][mine]))
        assert abs(row["mean_valence"] - rows["valence"][mine].mean(dtype=np.float64)) < 1e-5
        assert abs(row["mean_arousal"] - rows["arousal"][mine].mean(dtype=np.float64)) < 1e-5
    no_face = videos[str(clip_folder / "no_face.mp4")]
    assert (no_face["faces_found"], no_face["frames_with_face"], no_face["mean_valence"]) == (0, 0, None)


def test_duckdb_reads_both_tables_with_plain_sql(first_run):
    out = first_run[0]
    con = duckdb.connect()
    per_status = dict(con.execute(
        f"SELECT status, count(*) FROM read_parquet('{out}/videos/*.parquet') GROUP BY status").fetchall())
    assert per_status == {"ok": 2, "failed": 2, "no_face": 1}
    joined = con.execute(
        f"SELECT v.status, count(*) FROM read_parquet('{out}/frames/*.parquet') f "
        f"JOIN read_parquet('{out}/videos/*.parquet') v USING (video_id) GROUP BY v.status").fetchall()
    assert [status for status, _ in joined] == ["ok"]


def test_parquet_metadata_names_version_weights_and_options(first_run, synthetic_weights):
    checkpoint, backbone = synthetic_weights
    for table in ("frames", "videos"):
        for path in sorted((first_run[0] / table).glob("*.parquet")):
            footer = pq.read_metadata(path).metadata
            assert footer[b"mimamo.version"].decode() == __version__
            assert footer[b"mimamo.checkpoint_sha256"].decode() == sha256_file(checkpoint)
            assert footer[b"mimamo.backbone_sha256"].decode() == sha256_file(backbone)
            options = json.loads(footer[b"mimamo.options"])
            assert options["smoothing_size"] == SMOOTHING_S and options["length"] == 16


def test_metrics_count_videos_frames_and_snippets(first_run, first_frames):
    _, result = first_run
    query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace("mimamo"))
    counters = {c.key.metric.name: c.committed for c in query["counters"]}
    assert counters["videos_ok"] == 2 and counters["videos_failed"] == 2 and counters["videos_no_face"] == 1
    assert counters["frames_decoded"] == 72
    assert counters["frame_rows"] == first_frames.num_rows
    assert counters["snippets"] == 3 * 2  # 3 tracks of 24 faces -> [0, 16) and the end-aligned [8, 24)
    latencies = {d.key.metric.name for d in query["distributions"]}
    assert {"load_model_latency_ms", "face_stage_latency_ms", "predict_latency_ms", "backbone_latency_ms",
            "video_latency_ms"} <= latencies


def test_multi_processing_and_another_compute_batch_give_the_same_rows(first_frames, clip_folder,
                                                                        synthetic_weights, tmp_path):
    output = tmp_path / "multi"
    flags = pipeline_flags(clip_folder, synthetic_weights, output)
    flags[flags.index("--compute_batch_size") + 1] = "3"
    run(flags + ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    # the backbone's batch size changes float rounding only (mimamo_ops.model.backbone_runner)
    assert_same_rows(first_frames, read_sorted(output / "frames", KEY_COLUMNS), atol=1e-5)


@contextlib.contextmanager
def local_job_service():
    """Beam's local job service on 127.0.0.1 (the endpoint Flink and Spark job servers also expose)."""
    port = free_port()
    command = [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main", "--port", str(port)]
    with serve(command, port, "the job service"):
        yield f"localhost:{port}"


def test_mimamo_run_on_the_portable_runner_gives_identical_rows_seed_outputs_and_snippets(
        first_run, first_frames, clip_folder, synthetic_weights, tmp_path, capsys):
    """``mimamo run`` through Beam's local job service (the endpoint Flink's and Spark's job servers expose):
    the same rows as the first run, exactly, with the original's CSV outputs and the snippet rows kept."""
    output = tmp_path / "run2"
    flags = pipeline_flags(clip_folder, synthetic_weights, output)
    argv = ["run", str(clip_folder), "--seed_outputs", "--keep_intermediates"] + flags[2:]
    with local_job_service() as endpoint:
        status = cli.main(argv + ["--runner=PortableRunner", f"--job_endpoint={endpoint}",
                                  "--environment_type=LOOPBACK"])
    assert status == 3  # the corrupt and the empty clip failed
    printed = capsys.readouterr()
    seed = output / "seed"
    assert (seed / "one_face_va_preds.csv").read_text().splitlines()[0] == "valence,arousal,s"
    assert (seed / "two_faces_va_preds.csv").read_text().splitlines()[0] == "valence,arousal,s,face"
    assert (seed / "one_face_va_trend.png").stat().st_size > 0
    assert "2 ok" in printed.out and "2 failed" in printed.out and f"{first_frames.num_rows} frame rows" in printed.out
    assert str(output / "frames") in printed.out
    assert "videos" in printed.err  # the tqdm bar
    assert_same_rows(first_frames, read_sorted(output / "frames", KEY_COLUMNS))
    first_videos = read_sorted(first_run[0] / "videos", ["video_uri"])
    assert read_sorted(output / "videos", ["video_uri"]).equals(first_videos)
    snippets = pq.read_table(output / "snippets")
    assert snippets.num_rows == 3 * 2 * 16  # 3 tracks, 2 snippets of 16 rows each, before stitching
    assert set(snippets["snippet_index"].to_pylist()) == {0, 1}


def test_bad_option_fails_while_the_graph_is_built(clip_folder, synthetic_weights, tmp_path):
    flags = pipeline_flags(clip_folder, synthetic_weights, tmp_path / "never") + ["--nbands", "4"]
    with pytest.raises(ValueError, match="--nbands=4"):
        build_pipeline(beam.Pipeline(), beam.options.pipeline_options.PipelineOptions(flags))
    assert not (tmp_path / "never").exists()

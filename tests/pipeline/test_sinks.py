"""Parquet sinks: flat warehouse-friendly columns, run metadata in the footer, readable by pyarrow and DuckDB."""
from pathlib import Path

import apache_beam as beam
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from beam_pipeline.sinks import (
    FRAMES_SCHEMA,
    VIDEOS_SCHEMA,
    WriteRows,
    WriteTables,
    build_frames_table,
    compute_video_id,
    with_run_metadata,
)

METADATA = {"mimamo.version": "9.9.9", "mimamo.options": '{"smoothing_size": 0.5}'}


def frames_table(uri: str, face_id: int, count: int) -> pa.Table:
    frames = np.arange(count, dtype=np.int64) * 2
    values = np.stack([np.linspace(-1, 1, count), np.linspace(0, 1, count)], 1).astype(np.float32)
    boxes = np.tile(np.array([[10, 20, 110, 140]], dtype=np.float32), (count, 1))
    return build_frames_table(uri, face_id, frames, frames / 30.0, values, values * 0.5, boxes,
                              np.full(count, 0.9, np.float32), np.full(count, face_id, np.int32))


def test_every_column_is_a_flat_scalar_type():
    for schema in (FRAMES_SCHEMA, VIDEOS_SCHEMA):
        for field in schema:
            assert not pa.types.is_nested(field.type), field


def test_video_id_is_stable_and_distinct_per_uri():
    assert compute_video_id("gs://b/a.mp4") == compute_video_id("gs://b/a.mp4")
    assert compute_video_id("gs://b/a.mp4") != compute_video_id("gs://b/b.mp4")
    assert len(compute_video_id("x")) == 16


def test_written_tables_read_back_with_metadata_and_sql(tmp_path: Path):
    out = str(tmp_path)
    with beam.Pipeline() as pipeline:
        _ = (
            pipeline
            | "CreateTables" >> beam.Create([frames_table("/v/a.mp4", 0, 5), frames_table("/v/a.mp4", 1, 3)])
            | "WriteFrames" >> WriteTables(f"{out}/frames", with_run_metadata(FRAMES_SCHEMA, METADATA), num_shards=2)
        )
        _ = (
            pipeline
            | "CreateRows" >> beam.Create([
                {"video_uri": "/v/a.mp4", "video_id": compute_video_id("/v/a.mp4"), "status": "ok", "fps": 30.0,
                 "frame_count": 10, "faces_found": 2, "frames_with_face": 5, "mean_valence": 0.1,
                 "mean_arousal": 0.2, "duration_s": 0.33, "error_stage": None, "error": None,
                 "frames_undecodable": 0, "warning": None},
                {"video_uri": "/v/bad.mp4", "video_id": compute_video_id("/v/bad.mp4"), "status": "failed",
                 "error_stage": "probe", "error": "VideoError: /v/bad.mp4: no video stream", "fps": None,
                 "frame_count": None, "faces_found": None, "frames_with_face": None, "mean_valence": None,
                 "mean_arousal": None, "duration_s": None, "frames_undecodable": None, "warning": None},
            ])
            | "WriteVideos" >> WriteRows(f"{out}/videos", with_run_metadata(VIDEOS_SCHEMA, METADATA))
        )
    frame_files = sorted((tmp_path / "frames").glob("part-*-of-00002.parquet"))
    assert len(frame_files) == 2
    frames = pq.read_table(tmp_path / "frames")
    assert frames.num_rows == 8
    assert frames.schema.remove_metadata().equals(FRAMES_SCHEMA.remove_metadata())
    footer = pq.read_metadata(frame_files[0]).metadata
    assert footer[b"mimamo.version"] == b"9.9.9"
    assert footer[b"mimamo.options"] == b'{"smoothing_size": 0.5}'
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT face_id, count(*), max(frame_index), min(confidence) FROM read_parquet('{out}/frames/*.parquet') "
        "GROUP BY face_id ORDER BY face_id"
    ).fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [(0, 5, 8), (1, 3, 4)]
    assert abs(rows[0][3] - 0.9) < 1e-6
    videos = con.execute(
        f"SELECT status, error_stage, error, frame_count FROM read_parquet('{out}/videos/*.parquet') ORDER BY status"
    ).fetchall()
    assert videos == [("failed", "probe", "VideoError: /v/bad.mp4: no video stream", None), ("ok", None, None, 10)]

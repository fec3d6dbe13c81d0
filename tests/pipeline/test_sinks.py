"""Parquet sinks: flat warehouse-friendly columns, run metadata in the footer, readable by pyarrow and DuckDB."""
from pathlib import Path

import apache_beam as beam
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from beam_pipeline.predict import ValenceArousalResult
from beam_pipeline.rows import FrameRow, SnippetRow, VideoRow, compute_video_id, failed_video_row
from beam_pipeline.sinks import FRAMES_SCHEMA, VIDEOS_SCHEMA, WriteResultTables

METADATA = {"mimamo.version": "9.9.9", "mimamo.settings": '{"smoothing_size": 0.5}'}


def frame_rows(uri: str, face_id: int, count: int):
    return [FrameRow(uri, compute_video_id(uri), face_id, face_id, "new", 2 * i, 2 * i / 30.0, -1 + 2 * i / max(count - 1, 1),
                     i / max(count - 1, 1), 0.5, 0.25, 10.0, 20.0, 110.0, 140.0, 0.9) for i in range(count)]


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
        frames = pipeline | "CreateFrames" >> beam.Create(
            frame_rows("/v/a.mp4", 0, 5) + frame_rows("/v/a.mp4", 1, 3)).with_output_types(FrameRow)
        videos = pipeline | "CreateVideos" >> beam.Create([
            VideoRow("/v/a.mp4", compute_video_id("/v/a.mp4"), "ok", None, None, None, 0.33, 30.0, 10, 0, 2, 5, 0.1,
                     0.2, None),
            failed_video_row("/v/bad.mp4", "probe", "VideoError: /v/bad.mp4: no video stream"),
        ]).with_output_types(VideoRow)
        snippets = pipeline | "CreateSnippets" >> beam.Create([]).with_output_types(SnippetRow)
        _ = ValenceArousalResult(frames, videos, snippets) | WriteResultTables(out, METADATA, num_shards=2)
    frame_files = sorted((tmp_path / "frames").glob("part-*-of-00002.parquet"))
    assert len(frame_files) == 2
    assert not (tmp_path / "snippets").exists()
    frames = pq.read_table(tmp_path / "frames")
    assert frames.num_rows == 8
    assert frames.schema.remove_metadata().equals(FRAMES_SCHEMA.remove_metadata())
    footer = pq.read_metadata(frame_files[0]).metadata
    assert footer[b"mimamo.version"] == b"9.9.9"
    assert footer[b"mimamo.settings"] == b'{"smoothing_size": 0.5}'
    assert b"mimamo.options" in footer
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

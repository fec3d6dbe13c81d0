"""Reading a run's Parquet tables back with DuckDB: the ``mimamo report`` summary and the per-video series.

A run writes ``OUTPUT/frames/*.parquet`` (one row per video, face and frame with a face) and
``OUTPUT/videos/*.parquet`` (one row per input video, failures included); their schemas are
:data:`beam_pipeline.sinks.FRAMES_SCHEMA` and :data:`beam_pipeline.sinks.VIDEOS_SCHEMA`. :func:`open_run` exposes
them as the DuckDB views ``frames`` and ``videos``; the other functions query those views and return plain data,
and :func:`format_run_report` turns a :class:`RunReport` into text tables. Only local outputs are read.
"""
import dataclasses
import glob
import os
from typing import Iterable, List, Optional, Sequence, Tuple

import duckdb
import numpy as np

from beam_pipeline.sinks import FRAMES_SCHEMA, VIDEOS_SCHEMA
from mimamo_ops.outputs.series import FaceSeries

__all__ = [
    "VideoRecord",
    "FaceFrameCount",
    "VideoMeans",
    "RunReport",
    "open_run",
    "count_videos_by_status",
    "list_videos",
    "list_failures",
    "count_frames_per_face",
    "summarise_videos",
    "read_face_series",
    "find_video",
    "build_run_report",
    "format_table",
    "format_run_report",
]

FRAMES_DIR = "frames"
VIDEOS_DIR = "videos"


@dataclasses.dataclass(frozen=True)
class VideoRecord:
    """One row of the ``videos`` table (the columns the report and the plots use)."""

    video_uri: str
    video_id: str
    status: str
    error_stage: Optional[str]
    error: Optional[str]
    duration_s: Optional[float]
    fps: Optional[float]
    frame_count: Optional[int]


@dataclasses.dataclass(frozen=True)
class FaceFrameCount:
    """Frames with one face of one video; ``first_s``/``last_s`` are its first and last timestamps, seconds."""

    video_uri: str
    face_id: int
    frames: int
    first_s: float
    last_s: float


@dataclasses.dataclass(frozen=True)
class VideoMeans:
    """Per-video means of the raw valence/arousal over every (face, frame) row; None without a face."""

    video_uri: str
    status: str
    faces: int
    frames_with_face: int
    mean_valence: Optional[float]
    mean_arousal: Optional[float]


@dataclasses.dataclass(frozen=True)
class RunReport:
    """Everything ``mimamo report`` prints."""

    output: str
    status_counts: List[Tuple[str, int]]
    failures: List[VideoRecord]
    face_counts: List[FaceFrameCount]
    video_means: List[VideoMeans]


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _create_view(connection: duckdb.DuckDBPyConnection, name: str, files: Sequence[str], schema) -> None:
    if files:
        listed = ", ".join(_sql_string(path) for path in files)
        connection.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{listed}], union_by_name = true)")
    else:  # a run where no video had a face writes no frames shard
        connection.register(f"{name}_empty", schema.empty_table())
        connection.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_empty")


def open_run(output: str) -> duckdb.DuckDBPyConnection:
    """Opens an in-memory DuckDB connection with views ``frames`` and ``videos`` over a run's Parquet files.

    Args:
        output: the run's local ``--output`` folder.

    Returns:
        The connection (close it when done).

    Raises:
        FileNotFoundError: ``output/videos/`` holds no Parquet file (not a finished run's output).
    """
    videos = sorted(glob.glob(os.path.join(glob.escape(output), VIDEOS_DIR, "*.parquet")))
    if not videos:
        raise FileNotFoundError(f"{output}: no {VIDEOS_DIR}/*.parquet; expected the --output folder of a finished "
                                "mimamo run")
    frames = sorted(glob.glob(os.path.join(glob.escape(output), FRAMES_DIR, "*.parquet")))
    connection = duckdb.connect(":memory:")
    _create_view(connection, "videos", videos, VIDEOS_SCHEMA)
    _create_view(connection, "frames", frames, FRAMES_SCHEMA)
    return connection


def count_videos_by_status(connection: duckdb.DuckDBPyConnection) -> List[Tuple[str, int]]:
    """Returns [(status, number of videos), ...], most frequent first (ties by status name)."""
    return connection.execute(
        "SELECT status, count(*) AS n FROM videos GROUP BY status ORDER BY n DESC, status"
    ).fetchall()


def _video_records(rows: Iterable[tuple]) -> List[VideoRecord]:
    return [VideoRecord(*row) for row in rows]


_VIDEO_COLUMNS = "video_uri, video_id, status, error_stage, error, duration_s, fps, frame_count"


def list_videos(connection: duckdb.DuckDBPyConnection) -> List[VideoRecord]:
    """Returns every video of the run, sorted by URI."""
    return _video_records(connection.execute(f"SELECT {_VIDEO_COLUMNS} FROM videos ORDER BY video_uri").fetchall())


def list_failures(connection: duckdb.DuckDBPyConnection) -> List[VideoRecord]:
    """Returns the videos whose status is ``failed``, with their stage and reason, sorted by URI."""
    return _video_records(connection.execute(
        f"SELECT {_VIDEO_COLUMNS} FROM videos WHERE status = 'failed' ORDER BY video_uri"
    ).fetchall())


def count_frames_per_face(connection: duckdb.DuckDBPyConnection) -> List[FaceFrameCount]:
    """Returns the number of frames with each face of each video, sorted by URI then face id."""
    rows = connection.execute(
        "SELECT video_uri, face_id, count(*), min(timestamp_s), max(timestamp_s) FROM frames "
        "GROUP BY video_uri, face_id ORDER BY video_uri, face_id"
    ).fetchall()
    return [FaceFrameCount(*row) for row in rows]


def summarise_videos(connection: duckdb.DuckDBPyConnection) -> List[VideoMeans]:
    """Returns, for every video (failed ones included), its face count, rows and mean raw valence/arousal."""
    rows = connection.execute(
        "SELECT v.video_uri, v.status, coalesce(f.faces, 0), coalesce(f.rows, 0), f.mean_valence, f.mean_arousal "
        "FROM videos AS v LEFT JOIN ("
        "  SELECT video_id, count(DISTINCT face_id) AS faces, count(*) AS rows,"
        "         avg(valence) AS mean_valence, avg(arousal) AS mean_arousal"
        "  FROM frames GROUP BY video_id"
        ") AS f USING (video_id) ORDER BY v.video_uri"
    ).fetchall()
    return [VideoMeans(*row) for row in rows]


def find_video(connection: duckdb.DuckDBPyConnection, key: str) -> VideoRecord:
    """Finds one video by its ``video_id``, its exact URI, or its file name (when that is unique).

    Raises:
        ValueError: no video, or several videos, match ``key``.
    """
    rows = connection.execute(
        f"SELECT {_VIDEO_COLUMNS} FROM videos WHERE video_id = ? OR video_uri = ? ORDER BY video_uri", [key, key]
    ).fetchall()
    if not rows:
        rows = [row for row in connection.execute(f"SELECT {_VIDEO_COLUMNS} FROM videos ORDER BY video_uri")
                .fetchall() if os.path.basename(row[0]) == key]
    if len(rows) != 1:
        found = "no video" if not rows else f"{len(rows)} videos ({', '.join(row[0] for row in rows)})"
        raise ValueError(f"--video {key!r}: {found} of this run match; give a video_id from `mimamo report`")
    return VideoRecord(*rows[0])


def read_face_series(connection: duckdb.DuckDBPyConnection, video_id: str) -> List[FaceSeries]:
    """Reads one video's rows of the ``frames`` table as one :class:`FaceSeries` per face (boxes included).

    Args:
        connection: from :func:`open_run`.
        video_id: the video's id.

    Returns:
        The face tracks sorted by face id, each sorted by frame index; empty when the video has no face rows.
    """
    columns = connection.execute(
        "SELECT face_id, frame_index, timestamp_s, valence, arousal, valence_smoothed, arousal_smoothed, "
        "box_x0_px, box_y0_px, box_x1_px, box_y1_px FROM frames WHERE video_id = ? ORDER BY face_id, frame_index",
        [video_id],
    ).fetchnumpy()
    columns = {name: np.asarray(values) for name, values in columns.items()}
    series = []
    for face_id in np.unique(columns["face_id"]):
        rows = columns["face_id"] == face_id
        series.append(FaceSeries(
            face_id=int(face_id),
            frame_indices=columns["frame_index"][rows].astype(np.int64),
            timestamps_s=columns["timestamp_s"][rows].astype(np.float64),
            valence_arousal=np.stack([columns["valence"][rows], columns["arousal"][rows]], 1).astype(np.float32),
            smoothed_valence_arousal=np.stack(
                [columns["valence_smoothed"][rows], columns["arousal_smoothed"][rows]], 1).astype(np.float32),
            boxes_px=np.stack([columns[f"box_{name}_px"][rows] for name in ("x0", "y0", "x1", "y1")], 1
                              ).astype(np.float32),
        ))
    return series


def build_run_report(output: str) -> RunReport:
    """Runs every report query on a run's output folder (see :func:`open_run` for the errors)."""
    connection = open_run(output)
    try:
        return RunReport(
            output=output,
            status_counts=count_videos_by_status(connection),
            failures=list_failures(connection),
            face_counts=count_frames_per_face(connection),
            video_means=summarise_videos(connection),
        )
    finally:
        connection.close()


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Formats rows as a plain-text table: left-aligned text, right-aligned numbers, a dashed rule under the header.

    None prints as ``-``, floats with 3 decimals, newlines inside a cell as spaces.
    """
    def cell(value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3f}"
        return " ".join(str(value).split())

    text = [[cell(value) for value in row] for row in rows]
    numeric = [bool(rows) and all(isinstance(row[i], (int, float)) or row[i] is None for row in rows)
               for i in range(len(headers))]
    widths = [max([len(header)] + [len(row[i]) for row in text]) for i, header in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.rjust(width) if right else value.ljust(width)
                         for value, width, right in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(headers), line(["-" * width for width in widths])] + [line(row) for row in text])


def format_run_report(report: RunReport) -> str:
    """Formats a :class:`RunReport` as the text ``mimamo report`` prints."""
    total = sum(count for _, count in report.status_counts)
    by_status = ", ".join(f"{status} {count}" for status, count in report.status_counts)
    sections = [
        f"Run {report.output}: {total} videos ({by_status})",
        "Videos by status\n" + format_table(("status", "videos"), report.status_counts),
    ]
    if report.failures:
        sections.append("Failures\n" + format_table(
            ("video", "stage", "reason"),
            [(record.video_uri, record.error_stage, record.error) for record in report.failures]))
    else:
        sections.append("Failures: none")
    sections.append("Frames per face\n" + format_table(
        ("video", "face", "frames", "first_s", "last_s"),
        [(c.video_uri, c.face_id, c.frames, c.first_s, c.last_s) for c in report.face_counts]))
    sections.append("Mean valence/arousal per video (raw, over all faces)\n" + format_table(
        ("video", "status", "faces", "frames", "mean_valence", "mean_arousal"),
        [(m.video_uri, m.status, m.faces, m.frames_with_face, m.mean_valence, m.mean_arousal)
         for m in report.video_means]))
    return "\n\n".join(sections) + "\n"

"""Parquet tables written under ``--output``: their Arrow schemas, row builders and the writing transforms.

* ``frames/``: one row per (video, face, frame with a face).
* ``videos/``: one row per input video, failures included. ``frame_count`` counts the frames that decoded;
  ``frames_undecodable`` the frame slots of a damaged video that did not (null when the face stage decodes on
  its own, as OpenFace does), with a one-line ``warning`` when it is not 0 (``mimamo_ops.decoding.video``).
* ``snippets/`` (``--keep_intermediates`` only): one row per (video, face, snippet, frame) before stitching.

Columns are flat scalars with types warehouses load directly (string, int32/int64, float32/float64); the run's
metadata (package version, checkpoint SHA-256s, every option) goes into each file's key-value metadata.
"""
import hashlib
from typing import Mapping, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
import pyarrow as pa

__all__ = [
    "FRAMES_SCHEMA",
    "VIDEOS_SCHEMA",
    "SNIPPETS_SCHEMA",
    "VIDEO_STATUSES",
    "compute_video_id",
    "with_run_metadata",
    "build_frames_table",
    "build_snippets_table",
    "WriteTables",
    "WriteRows",
]

VIDEO_STATUSES = ("ok", "no_face", "failed")

FRAMES_SCHEMA = pa.schema(
    [
        pa.field("video_uri", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("face_id", pa.int32(), nullable=False),
        pa.field("track_id", pa.int32(), nullable=False),
        pa.field("id_source", pa.string(), nullable=False),
        pa.field("frame_index", pa.int64(), nullable=False),
        pa.field("timestamp_s", pa.float64(), nullable=False),
        pa.field("valence", pa.float32(), nullable=False),
        pa.field("arousal", pa.float32(), nullable=False),
        pa.field("valence_smoothed", pa.float32(), nullable=False),
        pa.field("arousal_smoothed", pa.float32(), nullable=False),
        pa.field("box_x0_px", pa.float32(), nullable=False),
        pa.field("box_y0_px", pa.float32(), nullable=False),
        pa.field("box_x1_px", pa.float32(), nullable=False),
        pa.field("box_y1_px", pa.float32(), nullable=False),
        pa.field("confidence", pa.float32(), nullable=False),
    ]
)

VIDEOS_SCHEMA = pa.schema(
    [
        pa.field("video_uri", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error_stage", pa.string()),
        pa.field("error", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("fps", pa.float64()),
        pa.field("frame_count", pa.int64()),
        pa.field("frames_undecodable", pa.int64()),
        pa.field("faces_found", pa.int32()),
        pa.field("frames_with_face", pa.int64()),
        pa.field("mean_valence", pa.float32()),
        pa.field("mean_arousal", pa.float32()),
        pa.field("warning", pa.string()),
    ]
)

SNIPPETS_SCHEMA = pa.schema(
    [
        pa.field("video_uri", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("face_id", pa.int32(), nullable=False),
        pa.field("snippet_index", pa.int64(), nullable=False),
        pa.field("frame_index", pa.int64(), nullable=False),
        pa.field("timestamp_s", pa.float64(), nullable=False),
        pa.field("valence", pa.float32(), nullable=False),
        pa.field("arousal", pa.float32(), nullable=False),
    ]
)


def compute_video_id(video_uri: str) -> str:
    """Returns a stable id for a video: the first 16 hex digits of the SHA-256 of its URI (UTF-8)."""
    return hashlib.sha256(video_uri.encode("utf-8")).hexdigest()[:16]


def with_run_metadata(schema: pa.Schema, metadata: Mapping[str, str]) -> pa.Schema:
    """Returns ``schema`` carrying ``metadata`` (written to the Parquet footer as key-value metadata)."""
    return schema.with_metadata({key: value for key, value in metadata.items()})


def build_frames_table(
    video_uri: str,
    face_id: int,
    frame_indices: np.ndarray,
    timestamps_s: np.ndarray,
    valence_arousal: np.ndarray,
    smoothed_valence_arousal: np.ndarray,
    boxes_px: np.ndarray,
    confidences: np.ndarray,
    track_ids: np.ndarray,
    id_sources: Optional[Sequence[str]] = None,
) -> pa.Table:
    """Builds the ``frames`` rows of one face (one person; their rows may span several tracks).

    Args:
        video_uri: the video's URI as matched.
        face_id: the face's (person's) id.
        frame_indices: int64 (N,) 0-based video frame index of each row.
        timestamps_s: float64 (N,) presentation time of each frame, in seconds.
        valence_arousal: float32 (N, 2), columns (valence, arousal), raw network output.
        smoothed_valence_arousal: float32 (N, 2), the same after the moving average.
        boxes_px: float32 (N, 4) face boxes (x0, y0, x1, y1) in pixels of the decoded frame, origin top-left.
        confidences: float32 (N,) face detection confidence.
        track_ids: int (N,) the track (continuous segment, ended by a shot cut or a lost face) of each row.
        id_sources: (N,) how each row's ``face_id`` was decided (``mimamo_ops.faces.records.ID_SOURCES``: "new",
            "reid", "track"); None: "track" for every row.

    Returns:
        A table with ``FRAMES_SCHEMA`` (without metadata).
    """
    count = len(frame_indices)
    return pa.Table.from_arrays(
        [
            pa.array([video_uri] * count, pa.string()),
            pa.array([compute_video_id(video_uri)] * count, pa.string()),
            pa.array(np.full(count, face_id, dtype=np.int32)),
            pa.array(np.asarray(track_ids, dtype=np.int32)),
            pa.array(["track"] * count if id_sources is None else [str(v) for v in id_sources], pa.string()),
            pa.array(np.asarray(frame_indices, dtype=np.int64)),
            pa.array(np.asarray(timestamps_s, dtype=np.float64)),
            pa.array(np.ascontiguousarray(valence_arousal[:, 0], dtype=np.float32)),
            pa.array(np.ascontiguousarray(valence_arousal[:, 1], dtype=np.float32)),
            pa.array(np.ascontiguousarray(smoothed_valence_arousal[:, 0], dtype=np.float32)),
            pa.array(np.ascontiguousarray(smoothed_valence_arousal[:, 1], dtype=np.float32)),
            *(pa.array(np.ascontiguousarray(boxes_px[:, column], dtype=np.float32)) for column in range(4)),
            pa.array(np.asarray(confidences, dtype=np.float32)),
        ],
        schema=FRAMES_SCHEMA,
    )


def build_snippets_table(
    video_uri: str,
    face_id: int,
    snippet_index: int,
    frame_indices: np.ndarray,
    timestamps_s: np.ndarray,
    valence_arousal: np.ndarray,
) -> pa.Table:
    """Builds the ``snippets`` rows of one snippet (shapes as in :func:`build_frames_table`)."""
    count = len(frame_indices)
    return pa.Table.from_arrays(
        [
            pa.array([video_uri] * count, pa.string()),
            pa.array([compute_video_id(video_uri)] * count, pa.string()),
            pa.array(np.full(count, face_id, dtype=np.int32)),
            pa.array(np.full(count, snippet_index, dtype=np.int64)),
            pa.array(np.asarray(frame_indices, dtype=np.int64)),
            pa.array(np.asarray(timestamps_s, dtype=np.float64)),
            pa.array(np.ascontiguousarray(valence_arousal[:, 0], dtype=np.float32)),
            pa.array(np.ascontiguousarray(valence_arousal[:, 1], dtype=np.float32)),
        ],
        schema=SNIPPETS_SCHEMA,
    )


def _parquet_prefix(directory: str) -> str:
    return FileSystems.join(directory, "part")


class _WriteParquet(beam.PTransform):
    """Sharded Parquet under ``directory``: ``part-SSSSS-of-NNNNN.parquet``, zstd, ``schema``'s metadata in the footer.

    Subclasses name the Beam sink that matches their element type.
    """

    _sink = None  # a beam.io Parquet writer class

    def __init__(self, directory: str, schema: pa.Schema, num_shards: int = 0):
        super().__init__()
        self._directory = directory
        self._schema = schema
        self._num_shards = num_shards

    def expand(self, elements):
        return elements | "WriteParquet" >> self._sink(
            _parquet_prefix(self._directory),
            schema=self._schema,
            codec="zstd",
            file_name_suffix=".parquet",
            num_shards=self._num_shards,
        )


class WriteTables(_WriteParquet):
    """Writes a ``PCollection`` of ``pyarrow.Table`` (all with ``schema``'s columns); each table becomes one or
    more row groups."""

    _sink = beam.io.WriteToParquetBatched


class WriteRows(_WriteParquet):
    """Writes a ``PCollection`` of row dicts (keys: ``schema``'s column names), buffered into row groups."""

    _sink = beam.io.WriteToParquet

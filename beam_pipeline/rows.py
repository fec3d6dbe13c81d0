"""The typed rows every public transform emits: Beam schemas named and typed as the Parquet columns.

Each row type is a ``typing.NamedTuple`` registered with Beam's ``RowCoder``, so its PCollections carry a Beam
schema: ``beam.Select``, the DataFrame API (``apache_beam.dataframe.convert.to_dataframe``), Beam SQL and
``WriteToBigQuery`` take them as they are, and no row is pickled through a shuffle. Field types follow the
Parquet tables under ``--output``: ``np.int32``/``np.int64`` are INT32/INT64 columns, ``np.float32``/``np.float64``
FLOAT/DOUBLE, ``Optional[...]`` a nullable column, ``bytes`` BYTES, ``Sequence[np.float32]`` a list of floats.
The values themselves are plain Python ``int``, ``float``, ``str`` and ``bytes`` (a FLOAT column holds values
that float32 represents exactly), as they are after any shuffle.

* ``FrameRow``: one per (video, face, frame with a face): the ``frames/`` table.
* ``VideoRow``: one per input video, failures included: the ``videos/`` table.
* ``SnippetRow``: one per (video, face, snippet, frame) before stitching: the ``snippets/`` table.
* ``FaceCropRow``: one aligned face crop with its facts (``ExtractFaces``).
* ``AlignedFace``: one aligned face of a sequence a user brings (``PredictAlignedFaces``).
* ``FacePrediction``: valence and arousal of one frame of such a sequence.

``VideoResult`` is not a row: it carries one video's rows together, as Arrow tables, from the step that
predicts a video to the step that commits it (``beam_pipeline.commits``), inside one fused stage.

``arrow_schema(row_type, metadata)`` gives the pyarrow schema of a row type, with the run's key-value metadata.
"""
import collections.abc
import hashlib
import typing
from typing import Any, Dict, Mapping, Optional, Sequence, Type

import apache_beam as beam
import numpy as np
import pyarrow as pa

__all__ = [
    "VIDEO_STATUSES",
    "AlignedFace",
    "FaceCropRow",
    "FacePrediction",
    "FrameRow",
    "SnippetRow",
    "VideoResult",
    "VideoRow",
    "arrow_schema",
    "compute_video_id",
    "crop_array",
    "empty_table",
    "failed_video_row",
    "image_array",
    "row_to_dict",
    "with_row_type",
]

VIDEO_STATUSES = ("ok", "no_face", "failed")


class FrameRow(typing.NamedTuple):
    """One face in one frame of one video, with its prediction (the ``frames/`` table).

    Boxes are pixels of the upright decoded frame, origin top-left; ``valence``/``arousal`` are the network's
    output (about [-1, 1]); the ``_smoothed`` columns are the same after the ``smoothing_size`` moving average.
    """

    video_uri: str
    video_id: str
    face_id: np.int32  # the person within the video
    track_id: np.int32  # the continuous segment of that face (a shot cut or a lost face starts a new one)
    id_source: str  # how face_id was decided: "new", "reid" or "track" (mimamo_ops.faces.records.ID_SOURCES)
    frame_index: np.int64  # 0-based video frame
    timestamp_s: np.float64  # presentation time of the frame
    valence: np.float32
    arousal: np.float32
    valence_smoothed: np.float32
    arousal_smoothed: np.float32
    box_x0_px: np.float32
    box_y0_px: np.float32
    box_x1_px: np.float32
    box_y1_px: np.float32
    confidence: np.float32  # face detection confidence in [0, 1]


class VideoRow(typing.NamedTuple):
    """One input video and what became of it (the ``videos/`` table); failures included.

    ``status`` is one of ``VIDEO_STATUSES``; ``error_stage`` (``match``, ``read``, ``probe``, ``faces``,
    ``predict``; for a video in work units also ``encode`` and ``join``, ``beam_pipeline.units``) and ``error`` say where and why a video failed, and ``error_kind`` whether the failure may pass
    when tried again (``transient``: storage, network, disk full, CUDA memory; a rerun of the same run tries the
    video again) or not (``permanent``); see ``beam_pipeline.faults``. ``frame_count`` counts the frames that decoded,
    ``frames_undecodable`` the frame slots of a damaged video that did not (null when the face stage decodes on
    its own), with a one-line ``warning``. The means are over every frame row of the video (all faces).
    """

    video_uri: str
    video_id: str
    status: str
    error_stage: Optional[str]
    error: Optional[str]
    error_kind: Optional[str]  # for failed: "transient" or "permanent" (beam_pipeline.faults.ERROR_KINDS)
    duration_s: Optional[np.float64]
    fps: Optional[np.float64]
    frame_count: Optional[np.int64]
    frames_undecodable: Optional[np.int64]
    faces_found: Optional[np.int32]
    frames_with_face: Optional[np.int64]
    mean_valence: Optional[np.float32]
    mean_arousal: Optional[np.float32]
    warning: Optional[str]


class SnippetRow(typing.NamedTuple):
    """One frame of one snippet's prediction before stitching (the ``snippets/`` table, ``keep_snippets``)."""

    video_uri: str
    video_id: str
    face_id: np.int32
    snippet_index: np.int64
    frame_index: np.int64
    timestamp_s: np.float64
    valence: np.float32
    arousal: np.float32


class FaceCropRow(typing.NamedTuple):
    """One aligned face crop of one video frame (``ExtractFaces``).

    ``crop`` holds uint8 (``crop_size_px``, ``crop_size_px``, 3) RGB pixels, row-major ``[row y, col x, channel]``
    (``crop_array(row)`` decodes it); ``landmarks_xy_px`` the 68 iBUG points as (x0, y0, x1, y1, ...),
    pixels of the upright frame, origin top-left.
    """

    video_uri: str
    video_id: str
    face_id: np.int32
    track_id: np.int32
    id_source: str
    frame_index: np.int64
    timestamp_s: np.float64
    box_x0_px: np.float32
    box_y0_px: np.float32
    box_x1_px: np.float32
    box_y1_px: np.float32
    confidence: np.float32
    landmarks_xy_px: Sequence[np.float32]
    crop_size_px: np.int32
    crop: bytes


class AlignedFace(typing.NamedTuple):
    """One aligned face of a sequence a user brings to ``PredictAlignedFaces`` (OpenFace's crops, say).

    ``image`` holds uint8 (``height_px``, ``width_px``, 3) RGB pixels, row-major (``image_array(face)`` decodes
    it); the network resizes it as the original did (spec 3.4), so any size works; 112x112, as OpenFace writes,
    is what the model was trained on.
    """

    frame_index: np.int64
    timestamp_s: np.float64
    height_px: np.int32
    width_px: np.int32
    image: bytes

    @classmethod
    def from_array(cls, frame_index: int, timestamp_s: float, rgb: np.ndarray) -> "AlignedFace":
        """Builds the row from a uint8 (H, W, 3) RGB array."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"an aligned face must be uint8 (H, W, 3) RGB; got shape {rgb.shape}")
        return cls(int(frame_index), float(timestamp_s), int(rgb.shape[0]), int(rgb.shape[1]), rgb.tobytes())


class FacePrediction(typing.NamedTuple):
    """Valence and arousal of one frame of an aligned-face sequence (``PredictAlignedFaces``)."""

    frame_index: np.int64
    timestamp_s: np.float64
    valence: np.float32
    arousal: np.float32


def crop_array(row) -> np.ndarray:
    """A ``FaceCropRow``'s crop as uint8 (crop_size_px, crop_size_px, 3) RGB.

    A function rather than a method: after a shuffle some Beam releases hand rows back as their own schema type,
    which has the fields but not the methods.
    """
    side = int(row.crop_size_px)
    return np.frombuffer(row.crop, dtype=np.uint8).reshape(side, side, 3)


def image_array(face) -> np.ndarray:
    """An ``AlignedFace``'s image as uint8 (height_px, width_px, 3) RGB (a function, as ``crop_array``)."""
    return np.frombuffer(face.image, dtype=np.uint8).reshape(int(face.height_px), int(face.width_px), 3)


for _row_type in (FrameRow, VideoRow, SnippetRow, FaceCropRow, AlignedFace, FacePrediction):
    beam.coders.registry.register_coder(_row_type, beam.coders.RowCoder)

_ARROW_TYPES = {
    str: pa.string(),
    bytes: pa.binary(),
    np.int32: pa.int32(),
    np.int64: pa.int64(),
    np.float32: pa.float32(),
    np.float64: pa.float64(),
}


def _arrow_field(name: str, annotation) -> pa.Field:
    nullable = False
    if typing.get_origin(annotation) is typing.Union:  # Optional[X]
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
        nullable = True
    if typing.get_origin(annotation) in (list, collections.abc.Sequence):
        (item,) = typing.get_args(annotation)
        return pa.field(name, pa.list_(pa.field("item", _ARROW_TYPES[item], nullable=False)), nullable=nullable)
    return pa.field(name, _ARROW_TYPES[annotation], nullable=nullable)


def arrow_schema(row_type: Type[tuple], metadata: Optional[Mapping[str, str]] = None) -> pa.Schema:
    """The pyarrow schema of a row type: one field per NamedTuple field, in order, with ``metadata`` attached
    (written to the Parquet footer as key-value metadata)."""
    hints = typing.get_type_hints(row_type)
    fields = [_arrow_field(name, hints[name]) for name in row_type._fields]
    return pa.schema(fields, metadata=dict(metadata) if metadata else None)


def row_to_dict(row: Any) -> Dict[str, object]:
    """A row as a column name -> value dict (what ``beam.io.WriteToParquet`` takes with an explicit schema)."""
    return row._asdict()


def compute_video_id(video_uri: str) -> str:
    """A stable id for a video: the first 16 hex digits of the SHA-256 of its URI (UTF-8)."""
    return hashlib.sha256(video_uri.encode("utf-8")).hexdigest()[:16]


def failed_video_row(video_uri: str, error_stage: str, error: str, error_kind: str = "permanent",
                     **facts) -> VideoRow:
    """A ``failed`` ``VideoRow`` naming the stage, the cause and its kind (``transient`` or ``permanent``);
    ``facts`` fills other columns already known."""
    values: Dict[str, object] = {name: None for name in VideoRow._fields}
    values.update(video_uri=video_uri, video_id=compute_video_id(video_uri), status="failed",
                  error_stage=error_stage, error=error, error_kind=error_kind)
    values.update(facts)
    return VideoRow(**values)


class VideoResult(typing.NamedTuple):
    """One video's rows together: its ``VideoRow`` and its frame and snippet rows as Arrow tables.

    Attributes:
        video: the video's row (``failed`` ones included).
        frames: the ``FrameRow`` columns (``arrow_schema(FrameRow)``), sorted by (face_id, frame_index); no rows
            unless ``video.status`` is ``ok``.
        snippets: the ``SnippetRow`` columns, sorted by (face_id, snippet_index, frame_index); no rows without
            ``keep_intermediates`` or for a failed video.
    """

    video: VideoRow
    frames: pa.Table
    snippets: pa.Table

    @classmethod
    def of_row(cls, video: VideoRow) -> "VideoResult":
        """A video with no frame or snippet rows (a failure, a video without a face)."""
        return cls(video, empty_table(FrameRow), empty_table(SnippetRow))


def empty_table(row_type: Type[tuple]) -> pa.Table:
    """A table with the columns of ``row_type`` and no rows."""
    return arrow_schema(row_type).empty_table()


def _check_row(row, row_type):
    if not isinstance(row, row_type):
        raise TypeError(f"expected a {row_type.__name__}, got a {type(row).__name__}")
    return row


def with_row_type(pcoll: beam.PCollection, row_type: Type[tuple], label: str) -> beam.PCollection:
    """Gives ``pcoll`` (a tagged output, which Beam types ``Any``) its row type, so that it carries the row's
    schema and ``RowCoder`` (checked element by element)."""
    return pcoll | label >> beam.Map(_check_row, row_type).with_output_types(row_type)

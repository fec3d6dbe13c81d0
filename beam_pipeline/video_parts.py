"""What the prediction of one video gives before its rows are assembled: its row, and per face its snippet
predictions and detection facts (``beam_pipeline.predict`` makes them in one pass; ``beam_pipeline.units`` in
work units joined per video)."""
import typing
from typing import Dict, Iterator, List

import apache_beam as beam
import numpy as np

from beam_pipeline.rows import SnippetRow, VideoRow, compute_video_id
from mimamo_ops.model.predictor import SnippetPrediction

__all__ = ["CollectedFace", "DetectionPart", "SnippetPart", "VideoParts", "as_prediction", "snippet_rows"]


class SnippetPart(typing.NamedTuple):
    """The network's output for one snippet of one face: L frames (``mimamo_ops.model.predictor``)."""

    video_uri: str
    face_id: np.int32
    snippet_index: np.int64  # order within the face's rows; later snippets overwrite earlier ones
    positions: typing.Sequence[np.int64]  # rows of the face's list of detected faces
    frame_indices: typing.Sequence[np.int64]
    timestamps_s: typing.Sequence[np.float64]
    valence: typing.Sequence[np.float32]
    arousal: typing.Sequence[np.float32]


class DetectionPart(typing.NamedTuple):
    """Detection facts of consecutive frames of one face (up to ``predict.FACE_ROWS_CHUNK``)."""

    video_uri: str
    face_id: np.int32
    fps: np.float64  # the video's frame rate, for the smoothing window
    frame_indices: typing.Sequence[np.int64]
    boxes_xyxy_px: typing.Sequence[np.float32]  # (x0, y0, x1, y1) per frame, flattened; upright frame pixels
    confidences: typing.Sequence[np.float32]
    track_ids: typing.Sequence[np.int32]
    id_sources: typing.Sequence[str]  # how each face's face_id was decided (FaceRecord.id_source)


for _part_type in (SnippetPart, DetectionPart):
    beam.coders.registry.register_coder(_part_type, beam.coders.RowCoder)


class CollectedFace:
    """One face's predictions and detection facts, kept compact (numpy) until the video is done."""

    def __init__(self):
        self.snippets: List[SnippetPrediction] = []
        self.frame_indices: List[np.ndarray] = []  # int64 (n,) per chunk
        self.boxes: List[np.ndarray] = []  # float32 (n, 4) per chunk: x0, y0, x1, y1, upright frame pixels
        self.confidences: List[np.ndarray] = []  # float32 (n,) per chunk
        self.track_ids: List[np.ndarray] = []  # int32 (n,) per chunk
        self.id_sources: List[str] = []
        self.fps = 0.0

    def add_detections(self, part: "DetectionPart") -> None:
        self.fps = float(part.fps)
        self.frame_indices.append(np.asarray(part.frame_indices, dtype=np.int64))
        self.boxes.append(np.asarray(part.boxes_xyxy_px, dtype=np.float32).reshape(-1, 4))
        self.confidences.append(np.asarray(part.confidences, dtype=np.float32))
        self.track_ids.append(np.asarray(part.track_ids, dtype=np.int32))
        self.id_sources.extend(str(source) for source in part.id_sources)


class VideoParts(typing.NamedTuple):
    """What ``PredictVideoDoFn`` gives for one video: its row and, for an ``ok`` video, its faces' parts.

    Attributes:
        video: the video's row (``failed`` included); means not yet filled.
        faces: face_id -> that face's snippet predictions and detection facts (empty unless ``ok``).
        snippet_rows: the video's ``SnippetRow``s (``keep_snippet_rows`` and ``ok`` only).
    """

    video: VideoRow
    faces: Dict[int, CollectedFace]
    snippet_rows: List[SnippetRow]


def as_prediction(part: SnippetPart) -> SnippetPrediction:
    """The snippet as ``mimamo_ops`` holds it (numpy arrays)."""
    return SnippetPrediction(
        snippet_index=int(part.snippet_index),
        positions=np.asarray(part.positions, dtype=np.int64),
        frame_indices=np.asarray(part.frame_indices, dtype=np.int64),
        timestamps_s=np.asarray(part.timestamps_s, dtype=np.float64),
        valence_arousal=np.stack([np.asarray(part.valence, dtype=np.float32),
                                  np.asarray(part.arousal, dtype=np.float32)], axis=1),
    )




def snippet_rows(uri: str, face_id: int, snippet: SnippetPrediction) -> Iterator[SnippetRow]:
    """The ``SnippetRow`` of each frame of one snippet of one face (``keep_intermediates``)."""
    video_id = compute_video_id(uri)
    values = np.asarray(snippet.valence_arousal, dtype=np.float32).tolist()
    for frame_index, timestamp_s, (valence, arousal) in zip(snippet.frame_indices.tolist(),
                                                            snippet.timestamps_s.tolist(), values):
        yield SnippetRow(uri, video_id, int(face_id), int(snippet.snippet_index), frame_index, timestamp_s, valence,
                         arousal)

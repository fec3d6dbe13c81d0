"""Work units: the model work of one long video spread over many workers, joined back per video.

A video whose frames exceed one work unit (``--work_unit_s`` seconds of video) goes through three steps instead
of one pass (``beam_pipeline.predict.PredictVideoResults`` wires them):

1. ``PredictVideos`` (``PredictVideoDoFn``) runs the face stage over the whole video, which is sequential
   (tracks, shot cuts and identities depend on every earlier frame) but cheap: a few ms a frame, against
   tens for the model. Instead of feeding the model it plans: the frames are cut into units of consecutive
   frames (at most so many frames, and at most as many faces: :class:`UnitPlanner`), and each unit becomes one :class:`UnitBlock` holding, for every face in it, the faces' frames and
   landmarks (a few hundred bytes each; never pixels). The video's row and detection facts go on as a
   :class:`PendingVideo`.
2. ``SpreadUnits`` (a ``GroupByKey`` by unit) and ``EncodeUnits`` (:class:`EncodeUnitDoFn`): any worker decodes
   the unit's frames again (one seek, frames told apart by their timestamps, ``iter_frames_in_span``), makes the
   same aligned crops from the landmarks (``FaceAligner``) and runs the backbone, pyramid and per-frame net on them
   (``mimamo_ops.model.units.BlockEncoder``): about 95 % of a video's CPU time.
3. ``JoinUnits`` (:class:`JoinUnitsDoFn`): per video, the blocks' features are joined into each face's whole
   sequence, the positions at block ends computed again with their true windows, and the GRU run over the
   whole sequence (``mimamo_ops.model.units``). Out comes the same ``VideoParts`` the one-pass path gives.

The face stage is the one pass of the unsplit run, and the model side's join is exact, so the rows do not depend
on the unit length (``tests/pipeline/test_work_units.py`` compares them with the unsplit run's).

Failures keep the video's promise of one row: a unit that fails (after ``faults.VIDEO_RETRY``) comes out as a
:class:`UnitResult` carrying its error, and the join turns the video into a ``failed`` row naming the unit's
stage and cause; a video whose face stage fails never emits a ``PendingVideo`` and is reported by step 1 as
before. Units of an attempt that was tried again are told apart by ``attempt`` and dropped.
"""
import copy
import dataclasses
import logging
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.utils import shared

from beam_pipeline import faults
from beam_pipeline.metrics import METRICS_NAMESPACE
from beam_pipeline.model_loading import load_model, shared_model
from beam_pipeline.progress_records import ProgressWriter
from beam_pipeline.remote_files import open_video_source, storage_reads_checked
from beam_pipeline.rows import SnippetRow, failed_video_row
from beam_pipeline.video_parts import VideoParts, snippet_rows
from mimamo_ops.decoding.video import iter_frames, iter_frames_in_span
from mimamo_ops.errors import VideoError
from mimamo_ops.faces.builtin_stage import face_aligner
from mimamo_ops.faces.records import FaceConfig, FaceRecord
from mimamo_ops.model.predictor import MimamoModel, ModelConfig
from mimamo_ops.model.units import BlockEncoder, BlockFeatures, join_face_features, predict_snippets
from mimamo_ops.runtime.threads import apply_thread_budget

__all__ = ["EncodeUnitDoFn", "JoinUnitsDoFn", "PendingVideo", "SpreadUnits", "UnitBlock", "UnitPlanner",
           "UnitResult", "unit_frames"]

LOGGER = logging.getLogger(__name__)


def unit_frames(work_unit_s: float, fps: float, frame_count: int) -> int:
    """Frames per work unit for a video of ``frame_count`` frames at ``fps`` frames/s: the fewest units of at most
    ``work_unit_s`` seconds, all of one length, so that they cost about the same (a 70-second video in units of
    60 s: two of 35 s). 0 (not split) when the video fits in one unit or ``work_unit_s`` is 0."""
    if work_unit_s <= 0:
        return 0
    longest = max(1, int(round(work_unit_s * (fps if fps > 0 else 30.0))))
    if frame_count <= longest:
        return 0
    units = -(-frame_count // longest)
    return -(-frame_count // units)


@dataclasses.dataclass(frozen=True)
class UnitFaces:
    """One face's positions within one unit, as the face stage found them.

    Attributes:
        first_position: the face-sequence position (count of its earlier faces in the video) of row 0.
        frame_indices: int64 (n,), the video frame of each position, increasing.
        timestamps_s: float64 (n,), their presentation times in seconds.
        landmarks: float32 (n, 68, 2), frame pixels (x, y) in the upright frame.
    """

    first_position: int
    frame_indices: np.ndarray
    timestamps_s: np.ndarray
    landmarks: np.ndarray


@dataclasses.dataclass(frozen=True)
class UnitBlock:
    """One work unit of one video: frames [start_frame, end_frame) and the faces in them.

    Attributes:
        video_uri: the video.
        attempt: the face stage's attempt at the video that planned this unit (``faults.VIDEO_RETRY``).
        index: 0-based unit number within the video.
        start_frame: first frame of the unit.
        end_frame: first frame after the unit.
        faces: face_id -> its positions in the unit.
    """

    video_uri: str
    attempt: int
    index: int
    start_frame: int
    end_frame: int
    faces: Dict[int, UnitFaces]


@dataclasses.dataclass(frozen=True)
class UnitResult:
    """What ``EncodeUnits`` gives for one unit: each face's features, or the error that ended the unit.

    Attributes:
        video_uri: the video.
        attempt: as the unit's.
        index: as the unit's.
        faces: face_id -> (the block's features, its frame indices int64 (n,), its timestamps float64 (n,)).
        error: ``"<type>: <message>"`` of the failure, else None.
        error_kind: ``faults.TRANSIENT`` or ``faults.PERMANENT`` when ``error`` is set.
    """

    video_uri: str
    attempt: int
    index: int
    faces: Dict[int, Tuple[BlockFeatures, np.ndarray, np.ndarray]]
    error: Optional[str] = None
    error_kind: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class PendingVideo:
    """A video whose model work went out in units: its parts without snippets, and what the join checks.

    Attributes:
        parts: the video's row and detection facts (``VideoParts``; no snippets yet).
        attempt: the face stage's attempt whose units count.
        units: how many units it planned.
        positions: face_id -> the length of the face's sequence.
    """

    parts: VideoParts
    attempt: int
    units: int
    positions: Dict[int, int]


class SpreadUnits(beam.PTransform):
    """``UnitBlock``s -> the same, spread over the workers by a ``GroupByKey`` on (video, attempt, unit).

    Not ``beam.Reshuffle``: Flink's batch runner translates it as a rebalance, which Flink chained to the step
    before, so every unit of a video stayed on the TaskManager that planned them (seen in
    ``tests/cluster/test_flink.py``). A ``GroupByKey`` partitions by key on every runner.
    """

    def expand(self, units: beam.PCollection) -> beam.PCollection:
        return (units
                | "KeyByUnit" >> beam.Map(_keyed_by_unit)
                | "GroupByUnit" >> beam.GroupByKey()
                | "Ungroup" >> beam.FlatMap(_grouped_values))


def _keyed_by_unit(unit: "UnitBlock") -> Tuple[Tuple[str, int, int], "UnitBlock"]:
    return (unit.video_uri, unit.attempt, unit.index), unit


def _grouped_values(keyed: Tuple[object, Iterable["UnitBlock"]]) -> Iterable["UnitBlock"]:
    return keyed[1]


class UnitPlanner:
    """Collects the faces of one video's frames, in frame order, into work units (step 1 of the module docstring).

    A unit closes when it spans ``frames_per_unit`` frames or holds ``frames_per_unit`` faces, whichever comes
    first: its model work (per face) is then at most that of a one-face unit, so a crowd's frames are cut into
    more, shorter units that cost about what a one-face video's do, instead of units several times as costly.

    Args:
        video_uri: the video.
        attempt: the face stage's attempt.
        frames_per_unit: the most frames, and the most faces, of a unit (>= 1).
    """

    def __init__(self, video_uri: str, attempt: int, frames_per_unit: int):
        self._uri = video_uri
        self._attempt = attempt
        self._frames = frames_per_unit
        self._index = 0
        self._start = 0  # the open unit's first frame
        # face_id -> (frame index, timestamp_s, float32 (68, 2) landmarks) of each of its faces in the open unit:
        # never the crops, which the unit's worker makes again
        self._faces: Dict[int, List[Tuple[int, float, np.ndarray]]] = {}
        self._held = 0  # faces in the open unit
        self._end = 0  # the frame after the last one added
        self.positions: Dict[int, int] = {}  # face_id -> faces planned so far

    @property
    def units(self) -> int:
        """Units planned so far."""
        return self._index

    def add_frame(self, frame_index: int, faces: Iterable[FaceRecord]) -> List[UnitBlock]:
        """Adds one frame's faces; returns the units this frame closed (frames come in increasing order)."""
        closed = []
        while frame_index >= self._start + self._frames:
            closed.append(self._close(self._start + self._frames))
        self._end = frame_index + 1
        for face in faces:
            self._faces.setdefault(int(face.face_id), []).append(
                (int(face.frame_index), float(face.timestamp_s), np.asarray(face.landmarks, dtype=np.float32)))
            self._held += 1
        if self._held >= self._frames:
            closed.append(self._close(frame_index + 1))
        return closed

    def finish(self) -> List[UnitBlock]:
        """Closes the last unit at the end of the video; none when the faces since the last closed unit are none
        (the last frame filled a unit)."""
        if self._index and not self._faces:
            return []
        return [self._close(max(self._end, self._start + 1))]

    def _close(self, end_frame: int) -> UnitBlock:
        faces = {}
        for face_id, seen in sorted(self._faces.items()):
            first = self.positions.get(face_id, 0)
            frame_indices, timestamps_s, landmarks = zip(*seen)
            faces[face_id] = UnitFaces(
                first_position=first,
                frame_indices=np.array(frame_indices, dtype=np.int64),
                timestamps_s=np.array(timestamps_s, dtype=np.float64),
                landmarks=np.stack(landmarks),
            )
            self.positions[face_id] = first + len(seen)
        block = UnitBlock(self._uri, self._attempt, self._index, self._start, end_frame, faces)
        self._faces = {}
        self._held = 0
        self._index += 1
        self._start = end_frame
        return block


class EncodeUnitDoFn(beam.DoFn):
    """``UnitBlock`` -> ``UnitResult``: the unit's frames decoded again, its faces cropped from their landmarks and
    run through the backbone, pyramid and per-frame net (step 2 of the module docstring).

    The model is loaded once per process; with ``model_handle`` (``PredictVideoDoFn.unit_steps`` gives its own) it is
    the very model the prediction holds in the process.
    The unit's frames are decoded after a seek, a remote video streamed from storage (only the unit's bytes are
    read); when that fails or does not give every face's frame with the timestamp the face stage saw (a damaged
    video), the video is decoded again from the start, its frames counted as the face stage counted them. Errors are tried again as
    ``faults.VIDEO_RETRY`` says, then reported in the result.

    Args:
        model_config: the networks to load.
        face_config: the face stage's settings (for the crop).
        model_loader: builds the model from ``model_config`` (injected in unit tests).
        disk_budget_bytes: as ``PredictVideoDoFn``'s.
        clock: monotonic clock in seconds (injected in unit tests).
        model_handle: the ``Shared`` handle to take the model from (default: a handle of its own).
    """

    def __init__(self, model_config: ModelConfig, face_config: FaceConfig,
                 model_loader: Callable[[ModelConfig], MimamoModel] = load_model,
                 disk_budget_bytes: Optional[int] = None, clock: Callable[[], float] = time.perf_counter,
                 model_handle: Optional[shared.Shared] = None):
        self._model_config = model_config
        self._face_config = face_config
        self._model_loader = model_loader
        self._disk_budget_bytes = disk_budget_bytes
        self._clock = clock
        self._shared_model = model_handle or shared.Shared()
        self._model: Optional[MimamoModel] = None
        self._aligner = None
        self._units = Metrics.counter(METRICS_NAMESPACE, "work_units")
        self._failed = Metrics.counter(METRICS_NAMESPACE, "work_units_failed")
        self._latency = Metrics.distribution(METRICS_NAMESPACE, "work_unit_latency_ms")

    def setup(self) -> None:
        config = self._model_config
        apply_thread_budget(config.thread_budget())
        self._model = shared_model(self._shared_model, self._model_loader, config)
        self._aligner = face_aligner(self._face_config)

    def process(self, unit: UnitBlock) -> Iterator[UnitResult]:
        started = self._clock()
        what = f"{unit.video_uri} unit {unit.index}"
        try:
            faces = faults.retry_transient(lambda: self._encode(unit), what, policy=faults.VIDEO_RETRY)
            result = UnitResult(unit.video_uri, unit.attempt, unit.index, faces)
        except Exception as error:  # pylint: disable=broad-except  # one bad unit must not stop the pipeline
            kind, reason = faults.classify_error(error), faults.describe_error(error)
            LOGGER.warning("%s failed: %s (%s)", what, reason, kind, exc_info=error)
            self._failed.inc()
            result = UnitResult(unit.video_uri, unit.attempt, unit.index, {}, reason, kind)
        self._units.inc()
        self._latency.update(int((self._clock() - started) * 1000))
        yield result

    def _encode(self, unit: UnitBlock) -> Dict[int, Tuple[BlockFeatures, np.ndarray, np.ndarray]]:
        if not unit.faces:
            return {}
        try:
            encoded = self._encode_frames(unit, from_start=False)
            why = "the frames after a seek are not those the face stage saw"
        except VideoError as error:  # a damaged stretch after the seek: the decode from the start skips it
            encoded, why = None, str(error)
        if encoded is None:
            LOGGER.info("%s unit %d: %s; decoding from the start", unit.video_uri, unit.index, why)
            encoded = self._encode_frames(unit, from_start=True)
            if encoded is None:
                raise VideoError(f"{unit.video_uri}: frames {unit.start_frame}-{unit.end_frame - 1} do not decode "
                                 f"as they did for the face stage")
        return {face_id: (features, unit.faces[face_id].frame_indices, unit.faces[face_id].timestamps_s)
                for face_id, features in encoded.items()}

    def _encode_frames(self, unit: UnitBlock, from_start: bool) -> Optional[Dict[int, BlockFeatures]]:
        """Every face's features in the unit, its crops made frame by frame as the unit decodes; None when a
        face's frame did not come back as the face stage saw it.

        A seek to the unit's first face (``iter_frames_in_span``) reads only the unit's part of the file: frames are
        told apart by timestamp. From the start (``from_start``), they are counted as the face stage counted them
        (a damaged video, whose timestamps a seek may not reach)."""
        wanted: Dict[int, List[Tuple[int, int]]] = {}  # frame index -> (face_id, row)
        times: Dict[float, int] = {}  # timestamp -> frame index
        for face_id, faces in unit.faces.items():
            for row, (frame_index, time_s) in enumerate(zip(faces.frame_indices.tolist(),
                                                            faces.timestamps_s.tolist())):
                wanted.setdefault(frame_index, []).append((face_id, row))
                times[time_s] = frame_index
        encoders = {face_id: BlockEncoder(self._model, faces.first_position, len(faces.frame_indices))
                    for face_id, faces in unit.faces.items()}
        found = 0
        # a remote video is read straight from storage (a copy per unit would fetch the whole file each time)
        budget = self._disk_budget_bytes if from_start else 0
        with open_video_source(unit.video_uri, budget) as source, storage_reads_checked(source):
            if from_start:
                frames = iter_frames(source, end_frame=max(wanted) + 1)
            else:
                frames = iter_frames_in_span(source, min(times), max(times))
            for frame in frames:
                frame_index = frame.index if from_start else times.get(frame.timestamp_s)
                for face_id, row in wanted.get(frame_index, ()):
                    faces = unit.faces[face_id]
                    if frame.timestamp_s != float(faces.timestamps_s[row]):
                        return None
                    encoders[face_id].add(self._aligner.crop(frame.rgb, faces.landmarks[row]))
                    found += 1
        if found < sum(len(rows) for rows in wanted.values()):
            return None
        return {face_id: encoder.finish() for face_id, encoder in encoders.items()}


class JoinUnitsDoFn(beam.DoFn):
    """(video URI, {"pending": [PendingVideo], "units": [UnitResult, ...]}) -> ``VideoParts``: each face's
    features joined over its whole sequence and its snippets predicted (step 3 of the module docstring).

    Nothing comes out for a video without a ``PendingVideo`` (its face stage failed; step 1 reported it). A failed
    or missing unit makes the video a ``failed`` row.

    Args:
        model_config: the networks to load.
        progress_dir: local directory for progress records, or None.
        keep_snippet_rows: also give each snippet's ``SnippetRow``s.
        model_loader: builds the model from ``model_config`` (injected in unit tests).
        model_handle: the ``Shared`` handle to take the model from (default: a handle of its own).
    """

    def __init__(self, model_config: ModelConfig, progress_dir: Optional[str] = None,
                 keep_snippet_rows: bool = False,
                 model_loader: Callable[[ModelConfig], MimamoModel] = load_model,
                 model_handle: Optional[shared.Shared] = None):
        self._model_config = model_config
        self._progress_dir = progress_dir
        self._keep_snippet_rows = keep_snippet_rows
        self._model_loader = model_loader
        self._shared_model = model_handle or shared.Shared()
        self._model: Optional[MimamoModel] = None
        self._progress: Optional[ProgressWriter] = None
        self._videos = {status: Metrics.counter(METRICS_NAMESPACE, f"videos_{status}")
                        for status in ("ok", "failed", "no_face")}
        self._snippets = Metrics.counter(METRICS_NAMESPACE, "snippets")

    def setup(self) -> None:
        config = self._model_config
        apply_thread_budget(config.thread_budget())
        self._model = shared_model(self._shared_model, self._model_loader, config)
        if self._progress_dir:
            self._progress = ProgressWriter(self._progress_dir)

    def teardown(self) -> None:
        if self._progress is not None:
            self._progress.close()

    def process(self, keyed: Tuple[str, Dict[str, Iterable]]) -> Iterator[VideoParts]:
        uri, grouped = keyed
        pending = list(grouped["pending"])
        if not pending:
            return
        video = pending[0]
        units = {result.index: result for result in grouped["units"] if result.attempt == video.attempt}
        parts = self._join(uri, video, units)
        self._videos[parts.video.status].inc()
        if self._progress is not None:
            self._progress.finish_video(parts.video.status)
        yield parts

    def _join(self, uri: str, video: PendingVideo, units: Dict[int, UnitResult]) -> VideoParts:
        failed = sorted((result for result in units.values() if result.error), key=lambda result: result.index)
        if failed:
            first = failed[0]
            LOGGER.warning("%s failed at stage encode (unit %d): %s", uri, first.index, first.error)
            return VideoParts(failed_video_row(uri, "encode", first.error, error_kind=first.error_kind), {}, [])
        missing = sorted(set(range(video.units)) - set(units))
        if missing:
            error = f"RuntimeError: units {missing} of {video.units} never arrived"
            return VideoParts(failed_video_row(uri, "join", error, error_kind=faults.TRANSIENT), {}, [])
        try:
            return self._predict(uri, video, units)
        except Exception as error:  # pylint: disable=broad-except  # one bad video must not stop the pipeline
            reason = faults.describe_error(error)
            LOGGER.warning("%s failed at stage join: %s", uri, reason, exc_info=error)
            return VideoParts(failed_video_row(uri, "join", reason, error_kind=faults.classify_error(error)), {}, [])

    def _predict(self, uri: str, video: PendingVideo, units: Dict[int, UnitResult]) -> VideoParts:
        rows: List[SnippetRow] = []
        faces = {}
        for face_id, detected in video.parts.faces.items():
            pieces = [units[index].faces[face_id] for index in sorted(units) if face_id in units[index].faces]
            features = join_face_features(self._model, [piece[0] for piece in pieces], video.positions[face_id])
            frame_indices = np.concatenate([piece[1] for piece in pieces])
            timestamps_s = np.concatenate([piece[2] for piece in pieces])
            faces[face_id] = face = copy.copy(detected)  # the input element stays as it came
            face.snippets = predict_snippets(self._model, features, frame_indices, timestamps_s)
            self._snippets.inc(len(face.snippets))
            if self._keep_snippet_rows:
                for snippet in face.snippets:
                    rows.extend(snippet_rows(uri, face_id, snippet))
        return VideoParts(video.parts.video, faces, rows)

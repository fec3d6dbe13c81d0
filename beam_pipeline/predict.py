"""``PredictValenceArousal``: video URIs in, per-frame valence and arousal of every face out, as typed rows.

Data flow (step labels as in the graph)::

    ToVideoUris -> DropDuplicateUris -> SpreadVideos (Reshuffle)
    PredictVideos:   URI -> decode -> faces -> backbone, phase, two-stream net, per video; frames are streamed
                     (memory flat), the predictions of the video kept: VideoParts per video
    AssembleVideos:  the faces' snippets stitched, joined with the detections, smoothed; the means -> one
                     VideoResult per video (its VideoRow, its frame rows and snippet rows as Arrow tables)
    SplitRows:       VideoResult -> FrameRow, VideoRow, SnippetRow

The three steps run fused, one video at a time, with no shuffle after the videos are spread: everything a video
gives is together in one element as soon as the video is done, which is what lets ``mimamo run`` commit each
video on its own (``beam_pipeline.commits``) while the others are still running.

A video longer than one work unit (``work_unit_s``) takes another path after ``PredictVideos``, which then runs
only its face stage: SpreadUnits (GroupByKey by unit) -> EncodeUnits -> GroupUnits -> JoinUnits -> AssembleVideosInUnits
(``beam_pipeline.units``). Its results come out as their own PCollection (``VideoResults.in_units``).

Every input ends as a ``VideoRow``: a video that fails at any stage gets a ``failed`` row naming the stage, the
reason and whether it may pass when tried again (``error_kind``, ``beam_pipeline.faults``); a transient failure
is tried again once (``faults.VIDEO_RETRY``) before it is reported. A failed video's partial rows are dropped,
and the other videos carry on; nothing raises.
"""
import contextlib
import dataclasses
import json
import logging
import time
import typing
from typing import Callable, Dict, Generator, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.utils import shared

from beam_pipeline import faults
from beam_pipeline.config import (PREDICT_SETTINGS, isolation_config_from, model_and_face_configs, read_settings,
                                  video_disk_budget_bytes)
from beam_pipeline.matching import DistinctVideoUris
from beam_pipeline.metrics import METRICS_NAMESPACE
from beam_pipeline.model_loading import load_model, model_loader, shared_model
from beam_pipeline.options import worker_processes_per_machine
from beam_pipeline.progress_records import ProgressWriter
from beam_pipeline.remote_files import (RemoteVideo, cache_remote_weights, is_remote, open_video_source,
                                        storage_reads_checked, weights_sha256)
from beam_pipeline.rows import (FrameRow, SnippetRow, VideoResult, VideoRow, arrow_schema, compute_video_id,
                                failed_video_row, with_row_type)
from beam_pipeline.units import (EncodeUnitDoFn, JoinUnitsDoFn, PendingVideo, SpreadUnits, UnitPlanner,
                                 unit_frames)
from beam_pipeline.video_parts import (CollectedFace, DetectionPart, SnippetPart, VideoParts, as_prediction,
                                       snippet_rows)
from mimamo_ops import __version__
from mimamo_ops.faces.isolated_stage import FaceStage, open_face_stage
from mimamo_ops.faces.isolation import IsolationConfig
from mimamo_ops.faces.records import FaceConfig, FaceExtractor
from mimamo_ops.faces.stages import make_face_extractor
from mimamo_ops.model.checkpoints import BACKBONE, MIMAMO
from mimamo_ops.model.predictor import MimamoModel, ModelConfig, SnippetPrediction, stitch_snippets
from mimamo_ops.outputs.smoothing import smooth_moving_average, smoothing_window_frames
from mimamo_ops.runtime.threads import apply_thread_budget
from mimamo_ops.weights.standins import describe_weights

__all__ = [
    "AssembleVideoDoFn",
    "DetectionPart",
    "PredictFrames",
    "PredictValenceArousal",
    "PredictVideoDoFn",
    "PredictVideoResults",
    "VideoResults",
    "SnippetPart",
    "SplitVideoResults",
    "ValenceArousalResult",
    "VideoParts",
]

LOGGER = logging.getLogger(__name__)
VIDEOS_TAG = "videos"
DETECTIONS_TAG = "detections"
SNIPPET_ROWS_TAG = "snippet_rows"
FRAMES_TAG = "frames"
UNITS_TAG = "units"  # a long video's work units (beam_pipeline.units)
PENDING_TAG = "pending"  # a long video waiting for its units
FACE_ROWS_CHUNK = 256  # face facts buffered per face before they are emitted

class FaceSums(typing.NamedTuple):
    """Sums over one face's raw predictions, for the per-video means."""

    video_uri: str
    rows: np.int64
    valence_sum: np.float64
    arousal_sum: np.float64


beam.coders.registry.register_coder(FaceSums, beam.coders.RowCoder)

_FRAMES_SCHEMA = arrow_schema(FrameRow)
_SNIPPETS_SCHEMA = arrow_schema(SnippetRow)


class _VideoCollector:
    """Sorts the outputs ``PredictVideoDoFn._predict_video`` yields for one video by face."""

    def __init__(self):
        self.faces: Dict[int, CollectedFace] = {}
        self.snippet_rows: List[SnippetRow] = []

    def _face(self, face_id) -> CollectedFace:
        return self.faces.setdefault(int(face_id), CollectedFace())

    def add(self, output) -> None:
        if isinstance(output, beam.pvalue.TaggedOutput):
            if output.tag == DETECTIONS_TAG:
                self._face(output.value.face_id).add_detections(output.value)
            elif output.tag == SNIPPET_ROWS_TAG:
                self.snippet_rows.append(output.value)
            else:
                raise ValueError(f"unexpected output tag {output.tag!r}")
            return
        self._face(output.face_id).snippets.append(as_prediction(output))


_Return = typing.TypeVar("_Return")


def _collect(generator: Generator[object, None, _Return], collector: "_VideoCollector"
             ) -> Generator[object, None, _Return]:
    """Passes the work units of ``generator`` on at once and hands every other item to ``collector``; returns the
    generator's return value."""
    while True:
        try:
            item = next(generator)
        except StopIteration as done:
            return done.value
        if isinstance(item, beam.pvalue.TaggedOutput) and item.tag == UNITS_TAG:
            yield item
        else:
            collector.add(item)


class ValenceArousalResult(typing.NamedTuple):
    """What ``PredictValenceArousal`` returns: typed PCollections (Beam schemas, see ``beam_pipeline.rows``).

    Attributes:
        frames: ``FrameRow`` per (video, face, frame with a face).
        videos: ``VideoRow`` per distinct input, failures included.
        snippets: ``SnippetRow`` per (video, face, snippet, frame) before stitching; empty unless
            ``keep_intermediates=True``.
    """

    frames: beam.PCollection
    videos: beam.PCollection
    snippets: beam.PCollection


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class _StageError(Exception):
    """Carries the stage at which a video failed; the original error is its ``__cause__``."""

    def __init__(self, stage: str):
        super().__init__(stage)
        self.stage = stage


@contextlib.contextmanager
def _stage(name: str) -> Iterator[None]:
    try:
        yield
    except _StageError:
        raise
    except Exception as error:  # pylint: disable=broad-except  # one bad video must not stop the pipeline
        raise _StageError(name) from error


class _FaceState:
    """A face's streaming predictor and its detection facts not yet emitted."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.frame_indices: List[int] = []
        self.boxes: List[float] = []
        self.confidences: List[float] = []
        self.track_ids: List[int] = []
        self.id_sources: List[str] = []

    def add(self, face) -> None:
        self.frame_indices.append(int(face.frame_index))
        self.boxes.extend(float(value) for value in face.box)
        self.confidences.append(float(face.confidence))
        self.track_ids.append(int(face.track_id))
        self.id_sources.append(str(face.id_source))

    def pop(self, uri: str, face_id: int, fps: float) -> DetectionPart:
        part = DetectionPart(uri, int(face_id), float(fps), self.frame_indices, self.boxes,
                             self.confidences, self.track_ids, self.id_sources)
        self.frame_indices, self.boxes, self.confidences, self.track_ids, self.id_sources = [], [], [], [], []
        return part


class PredictVideoDoFn(beam.DoFn):
    """Video URI -> ``VideoParts``: the video's row and its faces' snippet predictions and detection facts.

    ``setup()`` first gives every threaded library of the process its share of the cores
    (``ModelConfig.thread_budget``, ``mimamo_ops.runtime.threads``). The model is loaded once per process and
    shared by the process's threads (``apache_beam.utils.shared.Shared``); each DoFn instance builds its own face
    extractor in ``setup()`` (the landmark detector keeps per-call state), in a supervised child process unless
    ``isolation`` says otherwise (``mimamo_ops.faces.isolated_stage``). Frames are streamed; the predictions (a few
    numbers per frame) are kept until the video is done. Any error while reading, decoding or predicting one video
    ends that video only, a native crash, a stall or a memory blow-up of its face stage included: a ``failed``
    ``VideoRow`` names the stage, the reason and its kind (``beam_pipeline.faults``); a transient one is first
    tried again as ``faults.VIDEO_RETRY`` says.

    Args:
        model_config: the networks to load.
        face_config: the face stage's settings.
        progress_dir: local directory for progress records (``beam_pipeline.progress_records``), or None.
        keep_snippet_rows: also keep each snippet's ``SnippetRow``s (``VideoParts.snippet_rows``).
        model_loader: builds the model from ``model_config`` (injected in unit tests).
        extractor_factory: builds the face extractor from ``face_config`` (injected in unit tests; picklable when
            isolated, since the child process calls it).
        clock: monotonic clock in seconds (injected in unit tests).
        isolation: whether the face stage runs in a supervised child process, and its limits.
        disk_budget_bytes: the largest remote video copied to the temp disk (``remote_files.open_video_source``);
            None: whatever fits.
        work_unit_s: seconds of video per work unit; a video with more frames than one unit only runs the face
            stage here and sends its model work out in units (``beam_pipeline.units``: tagged ``UNITS_TAG``,
            then a ``PendingVideo`` tagged ``PENDING_TAG`` instead of its ``VideoParts``). 0: never split.
    """

    def __init__(
        self,
        model_config: ModelConfig,
        face_config: FaceConfig,
        progress_dir: Optional[str] = None,
        keep_snippet_rows: bool = False,
        model_loader: Callable[[ModelConfig], MimamoModel] = load_model,
        extractor_factory: Callable[[FaceConfig], FaceExtractor] = make_face_extractor,
        clock: Callable[[], float] = time.perf_counter,
        isolation: IsolationConfig = IsolationConfig(),
        disk_budget_bytes: Optional[int] = None,
        work_unit_s: float = 0.0,
    ):
        self._model_config = model_config
        self._face_config = face_config
        self._progress_dir = progress_dir
        self._keep_snippet_rows = keep_snippet_rows
        self._model_loader = model_loader
        self._extractor_factory = extractor_factory
        self._clock = clock
        self._isolation = isolation
        self._disk_budget_bytes = disk_budget_bytes
        self._work_unit_s = work_unit_s
        self._shared_model = shared.Shared()
        self._model: Optional[MimamoModel] = None
        self._faces: Optional[FaceStage] = None
        self._progress: Optional[ProgressWriter] = None
        self._pending_load_ms: Optional[int] = None
        self._counters = {
            name: Metrics.counter(METRICS_NAMESPACE, name)
            for name in ("videos_ok", "videos_failed", "videos_no_face", "frames_decoded", "frames_with_face",
                         "faces_found", "snippets", "videos_streamed")
        }
        self._latencies = {
            name: Metrics.distribution(METRICS_NAMESPACE, name)
            for name in ("load_model_latency_ms", "face_stage_latency_ms", "predict_latency_ms",
                         "video_latency_ms")
        }

    def setup(self) -> None:
        started = self._clock()
        config = self._model_config
        # before any model loads: this process's share of the machine's cores for every threaded library
        apply_thread_budget(config.thread_budget())
        # the face stage's process loads its models while this one loads the networks
        self._faces = open_face_stage(self._face_config, config.thread_budget(), self._isolation,
                                      self._extractor_factory)
        self._faces.start()
        self._model = shared_model(self._shared_model, self._model_loader, config)
        # metrics updated in setup() are not attributed to a step, so the first process() call reports it
        self._pending_load_ms = int((self._clock() - started) * 1000)
        self._faces.wait_ready()
        if self._progress_dir:
            self._progress = ProgressWriter(self._progress_dir)

    def teardown(self) -> None:
        if self._faces is not None:
            self._faces.close()
        if self._progress is not None:
            self._progress.close()

    def process(self, uri: str) -> Iterator[VideoParts]:
        if self._pending_load_ms is not None:
            self._latencies["load_model_latency_ms"].update(self._pending_load_ms)
            self._pending_load_ms = None
        started = self._clock()
        policy = faults.VIDEO_RETRY
        for attempt in range(1, policy.attempts + 1):
            collector = _VideoCollector()
            try:
                summary, planner = yield from _collect(self._predict_video(uri, attempt), collector)
                break
            except _StageError as error:
                cause = error.__cause__
                kind = faults.classify_error(cause)
                if kind == faults.TRANSIENT and attempt < policy.attempts:
                    delay_s = policy.delay_s(attempt)
                    LOGGER.warning("%s failed at stage %s: %s (transient; try %d of %d), trying the video again "
                                   "in %.1f s", uri, error.stage, _describe(cause), attempt, policy.attempts, delay_s)
                    time.sleep(delay_s)
                    continue
                LOGGER.warning("%s failed at stage %s: %s (%s)", uri, error.stage, _describe(cause), kind,
                               exc_info=cause)
                summary, planner = failed_video_row(uri, error.stage, _describe(cause), error_kind=kind), None
                collector = _VideoCollector()  # its partial predictions are dropped
                break
        self._latencies["video_latency_ms"].update(int((self._clock() - started) * 1000))
        parts = VideoParts(summary, collector.faces, collector.snippet_rows)
        if planner is not None:  # the join counts and reports it (beam_pipeline.units)
            yield beam.pvalue.TaggedOutput(PENDING_TAG, PendingVideo(parts, attempt, planner.units, planner.positions))
            return
        self._counters[f"videos_{summary.status}"].inc()
        if self._progress is not None:
            self._progress.finish_video(summary.status)
        yield parts

    def _predict_video(self, uri: str, attempt: int
                       ) -> Generator[object, None, Tuple[VideoRow, Optional[UnitPlanner]]]:
        """Yields the video's outputs; returns its summary row and, for a video split into work units, their
        planner. Errors come out as ``_StageError``."""
        with _stage("read"), open_video_source(uri, self._disk_budget_bytes,
                                               local_file_only=self._face_config.openface_path is not None) as source, \
                storage_reads_checked(source):
            if isinstance(source, RemoteVideo):
                self._counters["videos_streamed"].inc()
            with _stage("probe"):
                video = self._faces.open_video(source)  # probes; decoding and faces go on in the background
            info, report, frames = video.info, video.report, video.frames
            planner = self._unit_planner(uri, attempt, info)
            faces: Dict[int, _FaceState] = {}
            frames_decoded = frames_with_face = 0
            # The face stage runs ahead; face_stage_latency_ms is the time spent waiting for it. The report's
            # frames_undecodable stays None when the face stage decodes on its own (OpenFace).
            while True:
                tick = self._clock()
                with _stage("faces"):
                    frame = next(frames, None)
                if frame is None:
                    break
                self._latencies["face_stage_latency_ms"].update(int((self._clock() - tick) * 1000))
                frames_decoded += 1
                self._counters["frames_decoded"].inc()
                if self._progress is not None:
                    self._progress.add_frames()
                if frame.faces:
                    frames_with_face += 1
                    self._counters["frames_with_face"].inc()
                if planner is not None:
                    for unit in planner.add_frame(frame.index, frame.faces):
                        yield beam.pvalue.TaggedOutput(UNITS_TAG, unit)
                for face in frame.faces:
                    state = faces.get(face.face_id)
                    if state is None:
                        state = faces[face.face_id] = _FaceState(None if planner else self._model.new_track())
                        self._counters["faces_found"].inc()
                    if planner is None:
                        tick = self._clock()
                        with _stage("predict"):
                            snippets = state.predictor.add_face(face.frame_index, face.timestamp_s, face.aligned)
                        self._latencies["predict_latency_ms"].update(int((self._clock() - tick) * 1000))
                        yield from self._emit_snippets(uri, face.face_id, snippets)
                    state.add(face)
                    if len(state.frame_indices) >= FACE_ROWS_CHUNK:
                        yield beam.pvalue.TaggedOutput(DETECTIONS_TAG, state.pop(uri, face.face_id, info.fps))
            for face_id in sorted(faces):
                state = faces[face_id]
                if planner is None:
                    tick = self._clock()
                    with _stage("predict"):
                        snippets = state.predictor.finish()
                    self._latencies["predict_latency_ms"].update(int((self._clock() - tick) * 1000))
                    yield from self._emit_snippets(uri, face_id, snippets)
                if state.frame_indices:
                    yield beam.pvalue.TaggedOutput(DETECTIONS_TAG, state.pop(uri, face_id, info.fps))
            if planner is not None:
                for unit in planner.finish():
                    yield beam.pvalue.TaggedOutput(UNITS_TAG, unit)
        return VideoRow(
            video_uri=uri,
            video_id=compute_video_id(uri),
            status="ok" if frames_with_face else "no_face",
            error_stage=None,
            error=None,
            error_kind=None,
            duration_s=info.duration_s,
            fps=info.fps,
            frame_count=frames_decoded,
            frames_undecodable=report.frames_undecodable,
            faces_found=len(faces),
            frames_with_face=frames_with_face,
            mean_valence=None,
            mean_arousal=None,
            warning=report.warning,
        ), planner

    def _unit_planner(self, uri: str, attempt: int, info) -> Optional[UnitPlanner]:
        """A planner of work units when the video has more frames than one unit and the face stage is built in
        (OpenFace's crops cannot be made again from landmarks); else None."""
        frames = unit_frames(self._work_unit_s, info.fps, info.frame_count or 0)
        if not frames or self._face_config.openface_path is not None:
            return None
        return UnitPlanner(uri, attempt, frames)

    def unit_steps(self) -> Tuple[EncodeUnitDoFn, JoinUnitsDoFn]:
        """The DoFns that compute and join this DoFn's work units, with its settings and its model handle (one model
        per process for the three)."""
        return (EncodeUnitDoFn(self._model_config, self._face_config, self._model_loader, self._disk_budget_bytes,
                               self._clock, model_handle=self._shared_model),
                JoinUnitsDoFn(self._model_config, self._progress_dir, self._keep_snippet_rows, self._model_loader,
                              model_handle=self._shared_model))

    def _emit_snippets(self, uri: str, face_id: int, snippets: List[SnippetPrediction]) -> Iterator:
        for snippet in snippets:
            self._counters["snippets"].inc()
            values = np.asarray(snippet.valence_arousal, dtype=np.float32)
            yield SnippetPart(uri, int(face_id), int(snippet.snippet_index), snippet.positions.tolist(),
                              snippet.frame_indices.tolist(), snippet.timestamps_s.tolist(),
                              values[:, 0].tolist(), values[:, 1].tolist())
            if self._keep_snippet_rows:
                for row in snippet_rows(uri, face_id, snippet):
                    yield beam.pvalue.TaggedOutput(SNIPPET_ROWS_TAG, row)


class _AssemblyError(ValueError):
    """A face's predictions and detections do not cover the same frames (a bug, reported as the video's failure)."""


def assemble_face(uri: str, face_id: int, face: CollectedFace, smoothing_size_s: Optional[float]
                  ) -> Tuple[pa.Table, FaceSums]:
    """One face's frame rows: its snippets stitched (later ones win, spec 9.1), joined with its detection facts
    by frame index, and smoothed (``mimamo_ops.outputs.smoothing``).

    Args:
        uri: the video's URI.
        face_id: the face.
        face: its predictions and detection facts.
        smoothing_size_s: moving-average window in seconds, or None.

    Returns:
        The ``FrameRow`` columns sorted by frame index, and the sums of its raw predictions (for the means).

    Raises:
        _AssemblyError: the predictions and the detections cover different frames.
    """
    frame_indices, timestamps_s, values = stitch_snippets(face.snippets)
    detected = np.concatenate(face.frame_indices)
    order = np.argsort(detected, kind="stable")
    if not np.array_equal(detected[order], frame_indices):
        raise _AssemblyError(f"{uri} face {face_id}: predictions cover {len(frame_indices)} frames but "
                             f"{len(detected)} faces were detected")
    boxes = np.concatenate(face.boxes)[order]
    confidences = np.concatenate(face.confidences)[order]
    track_ids = np.concatenate(face.track_ids)[order]
    id_sources = [face.id_sources[index] for index in order.tolist()]
    values = np.asarray(values, dtype=np.float32)
    smoothed = np.asarray(smooth_moving_average(values, smoothing_window_frames(smoothing_size_s, face.fps)),
                          dtype=np.float32)
    count = len(frame_indices)
    columns = {
        "video_uri": pa.array([uri] * count, pa.string()),
        "video_id": pa.array([compute_video_id(uri)] * count, pa.string()),
        "face_id": pa.array(np.full(count, face_id, dtype=np.int32)),
        "track_id": pa.array(track_ids),
        "id_source": pa.array(id_sources, pa.string()),
        "frame_index": pa.array(np.asarray(frame_indices, dtype=np.int64)),
        "timestamp_s": pa.array(np.asarray(timestamps_s, dtype=np.float64)),
        "valence": pa.array(values[:, 0]),
        "arousal": pa.array(values[:, 1]),
        "valence_smoothed": pa.array(smoothed[:, 0]),
        "arousal_smoothed": pa.array(smoothed[:, 1]),
        "box_x0_px": pa.array(boxes[:, 0]),
        "box_y0_px": pa.array(boxes[:, 1]),
        "box_x1_px": pa.array(boxes[:, 2]),
        "box_y1_px": pa.array(boxes[:, 3]),
        "confidence": pa.array(confidences),
    }
    table = pa.Table.from_arrays([columns[name] for name in _FRAMES_SCHEMA.names], schema=_FRAMES_SCHEMA)
    sums = FaceSums(uri, count, float(values[:, 0].astype(np.float64).sum()),
                    float(values[:, 1].astype(np.float64).sum()))
    return table, sums


def _snippet_table(rows: List[SnippetRow]) -> pa.Table:
    """``SnippetRow``s as columns, sorted by (face_id, snippet_index, frame_index)."""
    ordered = sorted(rows, key=lambda row: (row.face_id, row.snippet_index, row.frame_index))
    return pa.Table.from_pylist([row._asdict() for row in ordered], schema=_SNIPPETS_SCHEMA)


class AssembleVideoDoFn(beam.DoFn):
    """``VideoParts`` -> one ``VideoResult``: every face assembled (``assemble_face``), the means filled in.

    A failed video keeps no rows. A video whose faces cannot be assembled becomes a ``failed`` row (stage
    ``assemble``, ``permanent``).

    Args:
        smoothing_size_s: moving-average window in seconds for the ``_smoothed`` columns, or None.
    """

    def __init__(self, smoothing_size_s: Optional[float]):
        self._smoothing_size_s = smoothing_size_s
        self._rows = Metrics.counter(METRICS_NAMESPACE, "frame_rows")

    def process(self, parts: VideoParts) -> Iterator[VideoResult]:
        row = parts.video
        if row.status == "failed" or not parts.faces:
            yield VideoResult.of_row(row)
            return
        try:
            tables, sums = [], []
            for face_id in sorted(parts.faces):
                table, face_sums = assemble_face(row.video_uri, face_id, parts.faces[face_id],
                                                 self._smoothing_size_s)
                tables.append(table)
                sums.append(face_sums)
        except _AssemblyError as error:
            LOGGER.error("%s failed at stage assemble: %s", row.video_uri, error)
            yield VideoResult.of_row(failed_video_row(row.video_uri, "assemble", _describe(error)))
            return
        frames = pa.concat_tables(tables)
        self._rows.inc(frames.num_rows)
        yield VideoResult(add_means(row.video_uri, {"videos": [row], "sums": sums}), frames,
                          _snippet_table(parts.snippet_rows))


def _frame_rows(table: pa.Table) -> Iterator[FrameRow]:
    for values in table.to_pylist():
        yield FrameRow(**values)


class _SplitVideoResultDoFn(beam.DoFn):
    """``VideoResult`` -> its ``FrameRow``s (main), its ``VideoRow`` (``videos``), its ``SnippetRow``s."""

    def process(self, result: VideoResult) -> Iterator:
        yield from _frame_rows(result.frames)
        yield beam.pvalue.TaggedOutput(VIDEOS_TAG, result.video)
        for values in result.snippets.to_pylist():
            yield beam.pvalue.TaggedOutput(SNIPPET_ROWS_TAG, SnippetRow(**values))


class SplitVideoResults(beam.PTransform):
    """``VideoResult``s -> ``ValenceArousalResult``: typed ``FrameRow``, ``VideoRow`` and ``SnippetRow``
    PCollections."""

    def expand(self, results: beam.PCollection):  # a ValenceArousalResult (unannotated: Beam warns on it)
        split = results | "SplitRows" >> beam.ParDo(_SplitVideoResultDoFn()).with_outputs(
            VIDEOS_TAG, SNIPPET_ROWS_TAG, main=FRAMES_TAG)
        return ValenceArousalResult(with_row_type(split[FRAMES_TAG], FrameRow, "TypeFrameRows"),
                                    with_row_type(split[VIDEOS_TAG], VideoRow, "TypeVideoRows"),
                                    with_row_type(split[SNIPPET_ROWS_TAG], SnippetRow, "TypeSnippetRows"))


def add_means(uri: str, joined: Dict[str, Iterable]) -> VideoRow:
    """One ``VideoRow`` from a video's summary rows and its faces' sums (means over all its frame rows).

    A failed row wins over any other row of the same video.
    """
    row = min(joined["videos"], key=lambda item: item.status != "failed")
    sums = list(joined["sums"])
    rows = sum(int(item.rows) for item in sums)
    if row.status == "ok" and rows:
        row = row._replace(mean_valence=sum(item.valence_sum for item in sums) / rows,
                           mean_arousal=sum(item.arousal_sum for item in sums) / rows)
    return row



class PredictValenceArousal(beam.PTransform):
    """Video URIs -> per-frame valence and arousal of every face (MIMAMO-Net), as typed rows.

    Takes a PCollection of video URIs (``str``: local paths, ``gs://``, ``s3://``, anything Beam's
    ``FileSystems`` reads) or of ``FileMetadata`` as ``fileio.MatchFiles``/``MatchAll`` emit. Inputs naming the
    same file are one video. Returns a ``ValenceArousalResult``: ``.frames`` (``FrameRow``), ``.videos``
    (``VideoRow``, one per distinct input, failures included: a missing, corrupt or crashing video is a
    ``failed`` row naming the stage and the cause, never an exception) and ``.snippets`` (``SnippetRow``, with
    ``keep_intermediates=True``).

    Keyword arguments are the options of ``mimamo run`` by name (``checkpoint``, ``backbone``, ``multi_face``,
    ``smoothing_size``, ``face_backend``, ``device``, ``runtime``, ``length``, ``stride``, ...; see
    ``beam_pipeline.config.PREDICT_SETTINGS``), checked when the transform is built: ``TypeError`` for an unknown
    name, ``ValueError`` naming the argument for a bad value. Without ``checkpoint``/``backbone`` the official
    weights in the user cache are used (``mimamo weights fetch``). The model loads once per worker process.

    Example::

        with beam.Pipeline() as p:
            result = (p | beam.io.ReadFromText("videos.txt")
                        | PredictValenceArousal(multi_face=True, smoothing_size=0.5))
            result.frames | beam.io.WriteToParquet("out/frames", file_name_suffix=".parquet")
    """

    def __init__(self, *, progress_dir: Optional[str] = None, **settings):
        super().__init__()
        self._settings = read_settings(settings, PREDICT_SETTINGS, "PredictValenceArousal")
        self._given = dict(settings)
        self._progress_dir = progress_dir
        # resolved and verified now (remote weights fetched once here), so a bad file fails while building
        self._model_config, self._face_config = model_and_face_configs(self._settings, worker_processes=1)
        self._model_loader = model_loader(self._settings.backbone_sharing, self._model_config.device)

    @property
    def model_config(self) -> ModelConfig:
        """The model side's config (weights resolved)."""
        return self._model_config

    @property
    def face_config(self) -> FaceConfig:
        """The face stage's config."""
        return self._face_config

    def run_metadata(self) -> Dict[str, str]:
        """Key-value metadata for the tables (``WriteResultTables``): package version, the weights (stand-in or
        not) and their SHA-256s, and the settings given to this transform."""
        checkpoint = self._model_config.checkpoint_path
        local_checkpoint = cache_remote_weights(checkpoint, MIMAMO)[0] if is_remote(checkpoint) else checkpoint
        return {
            "mimamo.version": __version__,
            "mimamo.weights": describe_weights(local_checkpoint),
            "mimamo.checkpoint": checkpoint,
            "mimamo.checkpoint_sha256": weights_sha256(checkpoint, MIMAMO),
            "mimamo.backbone": self._model_config.backbone_path,
            "mimamo.backbone_sha256": weights_sha256(self._model_config.backbone_path, BACKBONE),
            "mimamo.settings": json.dumps(self._given, sort_keys=True, default=str),
        }

    def video_results(self) -> beam.PTransform:
        """The same prediction, one ``VideoResult`` per distinct video instead of rows, as ``VideoResults``
        (``mimamo run`` commits each as it comes, ``beam_pipeline.commits``)."""
        return _DistinctVideoResults(self)

    def _predict_fn(self, options) -> "PredictVideoDoFn":
        model_config = dataclasses.replace(self._model_config,
                                           worker_processes=worker_processes_per_machine(options))
        return PredictVideoDoFn(model_config, self._face_config, progress_dir=self._progress_dir,
                                keep_snippet_rows=self._settings.keep_intermediates, model_loader=self._model_loader,
                                isolation=isolation_config_from(self._settings),
                                disk_budget_bytes=video_disk_budget_bytes(self._settings),
                                work_unit_s=self._settings.work_unit_s)

    def expand(self, inputs: beam.PCollection):  # a ValenceArousalResult (unannotated: Beam warns on it)
        return (inputs
                | "DistinctVideoUris" >> DistinctVideoUris()
                | "PredictFrames" >> PredictFrames(self._predict_fn(inputs.pipeline.options),
                                                   self._settings.smoothing_size))


class _DistinctVideoResults(beam.PTransform):
    """Video URIs -> one ``VideoResult`` per distinct video (``PredictValenceArousal.video_results``), as
    ``VideoResults``."""

    def __init__(self, predict: PredictValenceArousal):
        super().__init__()
        self._predict = predict

    def expand(self, inputs: beam.PCollection):  # a VideoResults (unannotated: Beam warns on it)
        # pylint: disable=protected-access  # the transform's own configuration
        return (inputs
                | "DistinctVideoUris" >> DistinctVideoUris()
                | "PredictVideoResults" >> PredictVideoResults(self._predict._predict_fn(inputs.pipeline.options),
                                                               self._predict._settings.smoothing_size))


class VideoResults(typing.NamedTuple):
    """What ``PredictVideoResults`` returns: one ``VideoResult`` per distinct video, in one of two PCollections.

    Attributes:
        one_pass: the videos predicted in one pass, fused with the step that read them: a step applied to it
            directly (no ``Flatten``, no shuffle) sees each video as soon as it is done (``mimamo run`` commits
            them so).
        in_units: the videos whose model work went out in work units (``beam_pipeline.units``), once joined.
    """

    one_pass: beam.PCollection
    in_units: beam.PCollection


class PredictVideoResults(beam.PTransform):
    """Distinct video URIs -> ``VideoResults``: one ``VideoResult`` per video, with a configured
    ``PredictVideoDoFn``. A video is predicted and assembled in one fused stage, so that its rows are together as
    soon as it is done; a video longer than one work unit only runs its face stage there, and its model work
    goes out in units that any worker computes, joined per video (``beam_pipeline.units``).

    The two paths are two PCollections: a ``Flatten`` would hold every video of the one-pass path back until
    the other path is done on runners that materialise it (the DirectRunner does).

    Args:
        predict_fn: the configured :class:`PredictVideoDoFn`.
        smoothing_size_s: moving-average window in seconds, or None.
    """

    def __init__(self, predict_fn: PredictVideoDoFn, smoothing_size_s: Optional[float]):
        super().__init__()
        self._predict_fn = predict_fn
        self._smoothing_size_s = smoothing_size_s

    def expand(self, uris: beam.PCollection):  # a VideoResults (unannotated: Beam warns on it)
        predicted = uris | "PredictVideos" >> beam.ParDo(self._predict_fn).with_outputs(UNITS_TAG, PENDING_TAG,
                                                                                         main="parts")
        encode_units, join_units = self._predict_fn.unit_steps()
        units = (predicted[UNITS_TAG]
                 | "SpreadUnits" >> SpreadUnits()
                 | "EncodeUnits" >> beam.ParDo(encode_units)
                 | "KeyUnits" >> beam.Map(_keyed_by_video))
        pending = predicted[PENDING_TAG] | "KeyPending" >> beam.Map(_keyed_by_video)
        joined = ({"pending": pending, "units": units}
                  | "GroupUnits" >> beam.CoGroupByKey()
                  | "JoinUnits" >> beam.ParDo(join_units))
        assemble = AssembleVideoDoFn(self._smoothing_size_s)
        return VideoResults(predicted["parts"] | "AssembleVideos" >> beam.ParDo(assemble),
                            joined | "AssembleVideosInUnits" >> beam.ParDo(assemble))


def _keyed_by_video(item) -> Tuple[str, object]:
    """A ``UnitResult`` or ``PendingVideo`` keyed by its video's URI."""
    uri = item.parts.video.video_uri if isinstance(item, PendingVideo) else item.video_uri
    return uri, item


class PredictFrames(beam.PTransform):
    """Distinct video URIs -> ``ValenceArousalResult``, with a configured ``PredictVideoDoFn`` (the part of
    ``PredictValenceArousal`` after the URIs are made distinct; tests inject their DoFn here).

    Args:
        predict_fn: the configured :class:`PredictVideoDoFn`.
        smoothing_size_s: moving-average window in seconds, or None.
    """

    def __init__(self, predict_fn: PredictVideoDoFn, smoothing_size_s: Optional[float]):
        super().__init__()
        self._video_results = PredictVideoResults(predict_fn, smoothing_size_s)

    def expand(self, uris: beam.PCollection):  # a ValenceArousalResult (unannotated: Beam warns on it)
        results = uris | "PredictVideoResults" >> self._video_results
        return (tuple(results)
                | "AllVideoResults" >> beam.Flatten()
                | "SplitVideoResults" >> SplitVideoResults())

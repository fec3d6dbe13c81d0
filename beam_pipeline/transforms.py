"""DoFns and composite transforms of the MIMAMO-Net pipeline.

Data flow (labels as in the graph)::

    MatchVideos:   input arguments -> ExpandInputs -> DropDuplicateVideos (by resolved path) -> SplitMatches
                   -> SpreadVideos (Reshuffle) -> video URIs; missing or unreadable entries -> 'failed'
    PredictVideos: URI -> decode -> faces -> features -> phase -> two-stream net, streamed per video
                   main output: ((uri, face_id), SnippetPrediction | FaceRows)    (memory flat in video length)
                   'videos':    VideoSummary, one per video, failures included
    AssembleTracks: GroupByKey (uri, face_id) -> stitched, smoothed per-frame rows (a pyarrow.Table per track)
    SummariseVideos: VideoSummary + per-track sums, CoGroupByKey on uri -> one ``videos`` row per video

Every video that fails at any stage gets a ``failed`` row naming the stage and the reason, and its partial
predictions are dropped; the other videos carry on.
"""
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Callable, Dict, Generator, Iterable, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.utils import shared

from beam_pipeline.inputs import InputMatch, dedup_key, expand_input
from beam_pipeline.progress_records import ProgressWriter
from beam_pipeline.remote_files import localise_model_config, open_local_copy
from beam_pipeline.sinks import build_frames_table, build_snippets_table, compute_video_id
from mimamo_ops.faces.isolated_stage import FaceStage, open_face_stage
from mimamo_ops.faces.isolation import IsolationConfig
from mimamo_ops.faces.records import FaceConfig, FaceExtractor
from mimamo_ops.faces.stages import make_face_extractor
from mimamo_ops.model.predictor import MimamoModel, ModelConfig, SnippetPrediction, stitch_snippets
from mimamo_ops.outputs.smoothing import smooth_moving_average, smoothing_window_frames
from mimamo_ops.runtime.threads import apply_thread_budget

__all__ = [
    "METRICS_NAMESPACE",
    "VIDEOS_TAG",
    "SNIPPET_ROWS_TAG",
    "TRACK_STATS_TAG",
    "FaceRows",
    "VideoSummary",
    "TrackStats",
    "MatchVideos",
    "PredictVideoDoFn",
    "AssembleTrackDoFn",
    "PredictFrames",
    "SummariseVideos",
]

LOGGER = logging.getLogger(__name__)
METRICS_NAMESPACE = "mimamo"
VIDEOS_TAG = "videos"
SNIPPET_ROWS_TAG = "snippet_rows"
TRACK_STATS_TAG = "track_stats"
FACE_ROWS_CHUNK = 256  # face rows buffered per track before they are emitted


@dataclass(frozen=True)
class FaceRows:
    """Detection facts of consecutive faces of one track, sent beside the predictions.

    Attributes:
        frame_indices: int64 (n,) 0-based video frame index of each face.
        boxes_px: float32 (n, 4) face boxes (x0, y0, x1, y1), pixels in the upright frame, origin top-left.
        confidences: float32 (n,) detection confidence in [0, 1].
        fps: the video's frame rate in frames per second (for the smoothing window).
        track_ids: int32 (n,) track (continuous segment) of each face.
    """

    frame_indices: np.ndarray
    boxes_px: np.ndarray
    confidences: np.ndarray
    fps: float
    track_ids: np.ndarray


@dataclass(frozen=True)
class VideoSummary:
    """What the predict stage learnt about one video; ``status`` is ``ok``, ``no_face`` or ``failed``.

    ``error_stage`` is one of ``match``, ``read``, ``probe``, ``faces``, ``predict`` (failed videos only).
    ``frames_undecodable`` and ``warning`` come from the decoder's ``DecodeReport`` (damaged videos).
    """

    video_uri: str
    status: str
    error_stage: Optional[str] = None
    error: Optional[str] = None
    duration_s: Optional[float] = None
    fps: Optional[float] = None
    frame_count: Optional[int] = None
    faces_found: Optional[int] = None
    frames_with_face: Optional[int] = None
    frames_undecodable: Optional[int] = None
    warning: Optional[str] = None


@dataclass(frozen=True)
class TrackStats:
    """Sums over one track's raw predictions, for the per-video means."""

    face_id: int
    rows: int
    valence_sum: float
    arousal_sum: float


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class ExpandInputsDoFn(beam.DoFn):
    """Input argument -> ``(dedup_key, InputMatch)`` for every entry it stands for (``beam_pipeline.inputs``)."""

    def __init__(self, video_extensions: Tuple[str, ...]):
        self._video_extensions = tuple(video_extensions)

    def process(self, uri: str) -> Iterator[Tuple[str, InputMatch]]:
        try:
            matches = list(expand_input(uri, self._video_extensions))
        except (OSError, ValueError) as error:  # a FileSystems/IO error while listing the input
            matches = [InputMatch(uri, _describe(error), "match")]
        for match in matches:
            yield dedup_key(match.uri), match


def pick_first_match(matches: Iterable[InputMatch]) -> InputMatch:
    """Among entries with the same resolved path, the one given by that path, else the smallest URI.

    The choice does not depend on the order in which the runner delivers them.
    """
    return min(matches, key=lambda match: (match.uri != dedup_key(match.uri), match.uri))


class SplitMatchesDoFn(beam.DoFn):
    """``(key, InputMatch)`` -> the video URI, or a ``failed`` ``VideoSummary`` on 'videos' with the reason."""

    def __init__(self):
        self._failed = Metrics.counter(METRICS_NAMESPACE, "videos_failed")

    def process(self, element: Tuple[str, InputMatch]) -> Iterator:
        _, match = element
        if match.error is None:
            yield match.uri
            return
        LOGGER.warning("input %s is not a readable video: %s", match.uri, match.error)
        self._failed.inc()
        yield beam.pvalue.TaggedOutput(
            VIDEOS_TAG, VideoSummary(match.uri, "failed", error_stage=match.error_stage, error=match.error)
        )


class MatchVideos(beam.PTransform):
    """Input arguments -> distinct video URIs, reshuffled so that videos spread over workers.

    Every input, list line and match gives one entry; entries with the same resolved local path (or the same
    remote URI) are one. Returns a dict: ``videos`` (URIs) and ``failed`` (``VideoSummary`` of entries that are
    missing or cannot be read, one each).
    """

    def __init__(self, inputs: List[str], video_extensions: Tuple[str, ...],
                 entries: Optional[Sequence[InputMatch]] = None):
        """``entries``: inputs already expanded and de-duplicated on the launcher (a resumable run's batch);
        they are used as they are, so each keeps the reason it was given (a list line's number, say)."""
        super().__init__()
        self._inputs = list(inputs)
        self._video_extensions = tuple(video_extensions)
        self._entries = None if entries is None else list(entries)

    def expand(self, pipeline):
        if self._entries is None:
            keyed = (
                pipeline
                | "CreateInputs" >> beam.Create(self._inputs)
                | "ExpandInputs" >> beam.ParDo(ExpandInputsDoFn(self._video_extensions))
                | "DropDuplicateVideos" >> beam.CombinePerKey(pick_first_match)
            )
        else:
            keyed = pipeline | "CreateEntries" >> beam.Create([(dedup_key(e.uri), e) for e in self._entries])
        split = keyed | "SplitMatches" >> beam.ParDo(SplitMatchesDoFn()).with_outputs(VIDEOS_TAG, main="uris")
        uris = split.uris | "SpreadVideos" >> beam.Reshuffle()
        return {"videos": uris, "failed": split[VIDEOS_TAG]}


class _BackboneTimer:
    """Reports each backbone forward pass (one compute batch) to ``backbone_latency_ms``, whatever the runtime."""

    def __init__(self):
        self._latency = Metrics.distribution(METRICS_NAMESPACE, "backbone_latency_ms")

    def record(self, seconds: float) -> None:
        self._latency.update(int(seconds * 1000))


def _load_model(config: ModelConfig) -> MimamoModel:
    """Fetches remote weights into the worker's cache, loads the networks and times the backbone's passes."""
    model = MimamoModel.load(localise_model_config(config))
    model.backbone.add_batch_listener(_BackboneTimer().record)
    return model


class PredictVideoDoFn(beam.DoFn):
    """Video URI -> per-snippet predictions keyed by (uri, face_id), streaming, one video at a time.

    ``setup()`` first gives every threaded library of the process its share of the cores
    (``ModelConfig.thread_budget``, ``mimamo_ops.runtime.threads``). The model is loaded once per process and shared by
    the process's threads
    (``apache_beam.utils.shared.Shared``); each DoFn instance builds its own face extractor in ``setup()``
    (the landmark detector keeps per-call state), in a supervised child process unless ``isolation`` says
    otherwise (``mimamo_ops.faces.isolated_stage``). Any error while reading, decoding or predicting one video
    ends that video only, a native crash, a stall or a memory blow-up of its face stage included: a ``failed``
    ``VideoSummary`` names the stage and the reason.

    Args:
        model_config: the networks to load.
        face_config: the face stage's settings.
        progress_dir: local directory for progress records (``beam_pipeline.progress_records``), or None.
        keep_snippet_rows: also emit each snippet's rows as a table on the ``snippet_rows`` output.
        model_loader: builds the model from ``model_config`` (injected in unit tests).
        extractor_factory: builds the face extractor from ``face_config`` (injected in unit tests; picklable when
            isolated, since the child process calls it).
        clock: monotonic clock in seconds (injected in unit tests).
        isolation: whether the face stage runs in a supervised child process, and its limits.
    """

    def __init__(
        self,
        model_config: ModelConfig,
        face_config: FaceConfig,
        progress_dir: Optional[str] = None,
        keep_snippet_rows: bool = False,
        model_loader: Callable[[ModelConfig], MimamoModel] = _load_model,
        extractor_factory: Callable[[FaceConfig], FaceExtractor] = make_face_extractor,
        clock: Callable[[], float] = time.perf_counter,
        isolation: IsolationConfig = IsolationConfig(),
    ):
        self._model_config = model_config
        self._face_config = face_config
        self._progress_dir = progress_dir
        self._keep_snippet_rows = keep_snippet_rows
        self._model_loader = model_loader
        self._extractor_factory = extractor_factory
        self._clock = clock
        self._isolation = isolation
        self._shared_model = shared.Shared()
        self._model: Optional[MimamoModel] = None
        self._faces: Optional[FaceStage] = None
        self._progress: Optional[ProgressWriter] = None
        self._pending_load_ms: Optional[int] = None
        self._counters = {
            name: Metrics.counter(METRICS_NAMESPACE, name)
            for name in ("videos_ok", "videos_failed", "videos_no_face", "frames_decoded", "frames_with_face",
                         "faces_found", "snippets")
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
        self._model = self._shared_model.acquire(lambda: self._model_loader(config), tag=repr(config))
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

    def process(self, uri: str) -> Iterator:
        if self._pending_load_ms is not None:
            self._latencies["load_model_latency_ms"].update(self._pending_load_ms)
            self._pending_load_ms = None
        started = self._clock()
        try:
            summary = yield from self._predict_video(uri)
        except _StageError as error:
            cause = error.__cause__
            LOGGER.warning("%s failed at stage %s: %s", uri, error.stage, _describe(cause), exc_info=cause)
            summary = VideoSummary(uri, "failed", error_stage=error.stage, error=_describe(cause))
        self._latencies["video_latency_ms"].update(int((self._clock() - started) * 1000))
        self._counters[f"videos_{summary.status}"].inc()
        if self._progress is not None:
            self._progress.finish_video(summary.status)
        yield beam.pvalue.TaggedOutput(VIDEOS_TAG, summary)

    def _predict_video(self, uri: str) -> Generator[object, None, VideoSummary]:
        """Yields the video's outputs and returns its summary; errors come out as ``_StageError``."""
        with _stage("read"), open_local_copy(uri) as local_path:
            with _stage("probe"):
                video = self._faces.open_video(local_path)  # probes; decoding and faces go on in the background
            info, report, frames = video.info, video.report, video.frames
            tracks: Dict[int, "_TrackState"] = {}
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
                for face in frame.faces:
                    track = tracks.get(face.face_id)
                    if track is None:
                        track = tracks[face.face_id] = _TrackState(self._model.new_track())
                        self._counters["faces_found"].inc()
                    tick = self._clock()
                    with _stage("predict"):
                        snippets = track.predictor.add_face(face.frame_index, face.timestamp_s, face.aligned)
                    self._latencies["predict_latency_ms"].update(int((self._clock() - tick) * 1000))
                    yield from self._emit_snippets(uri, face.face_id, snippets)
                    track.add_face_row(face)
                    if len(track.frame_indices) >= FACE_ROWS_CHUNK:
                        yield (uri, face.face_id), track.pop_face_rows(info.fps)
            for face_id in sorted(tracks):
                track = tracks[face_id]
                tick = self._clock()
                with _stage("predict"):
                    snippets = track.predictor.finish()
                self._latencies["predict_latency_ms"].update(int((self._clock() - tick) * 1000))
                yield from self._emit_snippets(uri, face_id, snippets)
                if track.frame_indices:
                    yield (uri, face_id), track.pop_face_rows(info.fps)
        return VideoSummary(
            uri,
            "ok" if frames_with_face else "no_face",
            duration_s=info.duration_s,
            fps=info.fps,
            frame_count=frames_decoded,
            faces_found=len(tracks),
            frames_with_face=frames_with_face,
            frames_undecodable=report.frames_undecodable,
            warning=report.warning,
        )

    def _emit_snippets(self, uri: str, face_id: int, snippets: List[SnippetPrediction]) -> Iterator:
        for snippet in snippets:
            self._counters["snippets"].inc()
            yield (uri, face_id), snippet
            if self._keep_snippet_rows:
                yield beam.pvalue.TaggedOutput(
                    SNIPPET_ROWS_TAG,
                    build_snippets_table(uri, face_id, snippet.snippet_index, snippet.frame_indices,
                                         snippet.timestamps_s, snippet.valence_arousal),
                )


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


class _TrackState:
    """A track's streaming predictor and its face rows not yet emitted."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.frame_indices: List[int] = []
        self.boxes: List[Tuple[float, float, float, float]] = []
        self.confidences: List[float] = []
        self.track_ids: List[int] = []

    def add_face_row(self, face) -> None:
        self.frame_indices.append(face.frame_index)
        self.boxes.append(tuple(face.box))
        self.confidences.append(face.confidence)
        self.track_ids.append(face.track_id)

    def pop_face_rows(self, fps: float) -> FaceRows:
        rows = FaceRows(
            frame_indices=np.asarray(self.frame_indices, dtype=np.int64),
            boxes_px=np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4),
            confidences=np.asarray(self.confidences, dtype=np.float32),
            fps=float(fps),
            track_ids=np.asarray(self.track_ids, dtype=np.int32),
        )
        self.frame_indices, self.boxes, self.confidences, self.track_ids = [], [], [], []
        return rows


class AssembleTrackDoFn(beam.DoFn):
    """((uri, face_id), [SnippetPrediction | FaceRows]) -> one ``frames`` table per track.

    Stitches the snippets (later ones win, spec 9.1), joins the detection facts by frame index and adds the
    smoothed columns (``mimamo_ops.outputs.smoothing``). Tracks of videos listed in the ``failed_uris`` side input are
    dropped. Also emits ``(uri, TrackStats)`` on the ``track_stats`` output.
    """

    def __init__(self, smoothing_size_s: Optional[float]):
        self._smoothing_size_s = smoothing_size_s
        self._rows = Metrics.counter(METRICS_NAMESPACE, "frame_rows")

    def process(self, element, failed_uris: Dict[str, bool]) -> Iterator:
        (uri, face_id), parts = element
        if uri in failed_uris:
            return
        snippets = [part for part in parts if isinstance(part, SnippetPrediction)]
        face_rows = [part for part in parts if isinstance(part, FaceRows)]
        frame_indices, timestamps_s, values = stitch_snippets(snippets)
        detected = np.concatenate([rows.frame_indices for rows in face_rows])
        order = np.argsort(detected, kind="stable")
        detected = detected[order]
        if not np.array_equal(detected, frame_indices):
            raise RuntimeError(
                f"{uri} face {face_id}: predictions cover {len(frame_indices)} frames but {len(detected)} faces "
                "were detected"
            )
        boxes = np.concatenate([rows.boxes_px for rows in face_rows])[order]
        confidences = np.concatenate([rows.confidences for rows in face_rows])[order]
        track_ids = np.concatenate([rows.track_ids for rows in face_rows])[order]
        window = smoothing_window_frames(self._smoothing_size_s, face_rows[0].fps)
        smoothed = smooth_moving_average(values, window)
        self._rows.inc(len(frame_indices))
        yield build_frames_table(uri, face_id, frame_indices, timestamps_s, values, smoothed, boxes, confidences,
                                 track_ids)
        yield beam.pvalue.TaggedOutput(
            TRACK_STATS_TAG,
            (uri, TrackStats(face_id, len(values), float(values[:, 0].astype(np.float64).sum()),
                             float(values[:, 1].astype(np.float64).sum()))),
        )


def _is_failed(summary: VideoSummary) -> bool:
    return summary.status == "failed"


def _key_failed_uri(summary: VideoSummary) -> Tuple[str, bool]:
    return summary.video_uri, True


class PredictFrames(beam.PTransform):
    """Video URIs -> per-frame tables, per-video summaries and per-track sums.

    Returns a dict: ``frames`` (one ``pyarrow.Table`` per track), ``videos`` (``VideoSummary``),
    ``track_stats`` (``(uri, TrackStats)``) and ``snippet_rows`` (per-snippet tables, only filled when the
    DoFn keeps them). Tracks of a video that failed part-way are dropped, so a failed video has no frame rows.

    Args:
        predict_fn: the configured :class:`PredictVideoDoFn`.
        smoothing_size_s: moving-average window in seconds, or None.
    """

    def __init__(self, predict_fn: PredictVideoDoFn, smoothing_size_s: Optional[float]):
        super().__init__()
        self._predict_fn = predict_fn
        self._smoothing_size_s = smoothing_size_s

    def expand(self, uris):
        predicted = uris | "PredictVideos" >> beam.ParDo(self._predict_fn).with_outputs(
            VIDEOS_TAG, SNIPPET_ROWS_TAG, main="tracks"
        )
        failed_uris = (
            predicted[VIDEOS_TAG]
            | "KeepFailedVideos" >> beam.Filter(_is_failed)
            | "KeyFailedUris" >> beam.Map(_key_failed_uri)
        )
        assembled = (
            predicted.tracks
            | "GroupTracks" >> beam.GroupByKey()
            | "AssembleTracks" >> beam.ParDo(
                AssembleTrackDoFn(self._smoothing_size_s), failed_uris=beam.pvalue.AsDict(failed_uris)
            ).with_outputs(TRACK_STATS_TAG, main="frames")
        )
        return {
            "frames": assembled.frames,
            "videos": predicted[VIDEOS_TAG],
            "track_stats": assembled[TRACK_STATS_TAG],
            "snippet_rows": predicted[SNIPPET_ROWS_TAG],
        }


def build_video_row(uri: str, summaries: Iterable[VideoSummary], stats: Iterable[TrackStats]) -> Dict[str, object]:
    """Builds one ``videos`` row from a video's summary and its tracks' sums (mean over all its face rows)."""
    summary = min(summaries, key=lambda item: item.status != "failed")  # a failure wins over anything else
    row = {
        "video_uri": uri,
        "video_id": compute_video_id(uri),
        "status": summary.status,
        "error_stage": summary.error_stage,
        "error": summary.error,
        "duration_s": summary.duration_s,
        "fps": summary.fps,
        "frame_count": summary.frame_count,
        "faces_found": summary.faces_found,
        "frames_undecodable": summary.frames_undecodable,
        "frames_with_face": summary.frames_with_face,
        "mean_valence": None,
        "mean_arousal": None,
        "warning": summary.warning,
    }
    stats = list(stats)
    rows = sum(item.rows for item in stats)
    if summary.status == "ok" and rows:
        row["mean_valence"] = sum(item.valence_sum for item in stats) / rows
        row["mean_arousal"] = sum(item.arousal_sum for item in stats) / rows
    return row


class SummariseVideos(beam.PTransform):
    """(VideoSummary, (uri, TrackStats)) -> one ``videos`` row dict per video."""

    def expand(self, inputs):
        summaries, track_stats = inputs
        keyed = summaries | "KeySummaries" >> beam.Map(lambda summary: (summary.video_uri, summary))
        return (
            {"summary": keyed, "stats": track_stats}
            | "JoinTrackStats" >> beam.CoGroupByKey()
            | "BuildVideoRows" >> beam.MapTuple(
                lambda uri, joined: build_video_row(uri, joined["summary"], joined["stats"])
            )
        )

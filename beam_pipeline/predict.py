"""``PredictValenceArousal``: video URIs in, per-frame valence and arousal of every face out, as typed rows.

Data flow (step labels as in the graph)::

    ToVideoUris -> DropDuplicateUris -> SpreadVideos (Reshuffle)
    PredictVideos:  URI -> decode -> faces -> backbone, phase, two-stream net, streamed per video (memory flat)
                    main:        SnippetPart per snippet of a face     keyed by (uri, face_id)
                    detections:  DetectionPart per chunk of face facts  keyed by (uri, face_id)
                    videos:      VideoRow per video, failures included
    RegroupFaces:   CoGroupByKey (uri, face_id) -> AssembleFaces: stitched, smoothed FrameRow per frame
    AddVideoMeans:  VideoRow + the faces' sums, joined on the URI -> one VideoRow per video

Every input ends as a ``VideoRow``: a video that fails at any stage gets a ``failed`` row naming the stage and
the reason, its partial rows are dropped, and the other videos carry on; nothing raises.
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
from apache_beam.metrics import Metrics
from apache_beam.utils import shared

from beam_pipeline.config import PREDICT_SETTINGS, isolation_config_from, model_and_face_configs, read_settings
from beam_pipeline.matching import DistinctVideoUris
from beam_pipeline.metrics import METRICS_NAMESPACE
from beam_pipeline.model_loading import load_model
from beam_pipeline.options import worker_processes_per_machine
from beam_pipeline.progress_records import ProgressWriter
from beam_pipeline.remote_files import cache_remote_weights, is_remote, open_local_copy, weights_sha256
from beam_pipeline.rows import FrameRow, SnippetRow, VideoRow, compute_video_id, failed_video_row, with_row_type
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
    "DetectionPart",
    "PredictFrames",
    "PredictValenceArousal",
    "PredictVideoDoFn",
    "SnippetPart",
    "ValenceArousalResult",
]

LOGGER = logging.getLogger(__name__)
VIDEOS_TAG = "videos"
DETECTIONS_TAG = "detections"
SNIPPET_ROWS_TAG = "snippet_rows"
FACE_SUMS_TAG = "face_sums"
FACE_ROWS_CHUNK = 256  # face facts buffered per face before they are emitted

FaceKey = Tuple[str, int]  # (video URI, face_id)


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
    """Detection facts of up to ``FACE_ROWS_CHUNK`` consecutive frames of one face."""

    video_uri: str
    face_id: np.int32
    fps: np.float64  # the video's frame rate, for the smoothing window
    frame_indices: typing.Sequence[np.int64]
    boxes_xyxy_px: typing.Sequence[np.float32]  # (x0, y0, x1, y1) per frame, flattened; upright frame pixels
    confidences: typing.Sequence[np.float32]
    track_ids: typing.Sequence[np.int32]
    id_sources: typing.Sequence[str]  # how each face's face_id was decided (FaceRecord.id_source)


class FaceSums(typing.NamedTuple):
    """Sums over one face's raw predictions, for the per-video means."""

    video_uri: str
    rows: np.int64
    valence_sum: np.float64
    arousal_sum: np.float64


for _part_type in (SnippetPart, DetectionPart, FaceSums):
    beam.coders.registry.register_coder(_part_type, beam.coders.RowCoder)


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
    """Video URI -> per-snippet predictions and detection facts keyed by (uri, face_id), one video at a time.

    ``setup()`` first gives every threaded library of the process its share of the cores
    (``ModelConfig.thread_budget``, ``mimamo_ops.runtime.threads``). The model is loaded once per process and
    shared by the process's threads (``apache_beam.utils.shared.Shared``); each DoFn instance builds its own face
    extractor in ``setup()`` (the landmark detector keeps per-call state), in a supervised child process unless
    ``isolation`` says otherwise (``mimamo_ops.faces.isolated_stage``). Any error while reading, decoding or
    predicting one video ends that video only, a native crash, a stall or a memory blow-up of its face stage
    included: a ``failed`` ``VideoRow`` names the stage and the reason.

    Args:
        model_config: the networks to load.
        face_config: the face stage's settings.
        progress_dir: local directory for progress records (``beam_pipeline.progress_records``), or None.
        keep_snippet_rows: also emit each snippet's ``SnippetRow``s on the ``snippet_rows`` output.
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
        model_loader: Callable[[ModelConfig], MimamoModel] = load_model,
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
            summary = failed_video_row(uri, error.stage, _describe(cause))
        self._latencies["video_latency_ms"].update(int((self._clock() - started) * 1000))
        self._counters[f"videos_{summary.status}"].inc()
        if self._progress is not None:
            self._progress.finish_video(summary.status)
        yield beam.pvalue.TaggedOutput(VIDEOS_TAG, summary)

    def _predict_video(self, uri: str) -> Generator[object, None, VideoRow]:
        """Yields the video's outputs and returns its summary row; errors come out as ``_StageError``."""
        with _stage("read"), open_local_copy(uri) as local_path:
            with _stage("probe"):
                video = self._faces.open_video(local_path)  # probes; decoding and faces go on in the background
            info, report, frames = video.info, video.report, video.frames
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
                for face in frame.faces:
                    state = faces.get(face.face_id)
                    if state is None:
                        state = faces[face.face_id] = _FaceState(self._model.new_track())
                        self._counters["faces_found"].inc()
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
                tick = self._clock()
                with _stage("predict"):
                    snippets = state.predictor.finish()
                self._latencies["predict_latency_ms"].update(int((self._clock() - tick) * 1000))
                yield from self._emit_snippets(uri, face_id, snippets)
                if state.frame_indices:
                    yield beam.pvalue.TaggedOutput(DETECTIONS_TAG, state.pop(uri, face_id, info.fps))
        return VideoRow(
            video_uri=uri,
            video_id=compute_video_id(uri),
            status="ok" if frames_with_face else "no_face",
            error_stage=None,
            error=None,
            duration_s=info.duration_s,
            fps=info.fps,
            frame_count=frames_decoded,
            frames_undecodable=report.frames_undecodable,
            faces_found=len(faces),
            frames_with_face=frames_with_face,
            mean_valence=None,
            mean_arousal=None,
            warning=report.warning,
        )

    def _emit_snippets(self, uri: str, face_id: int, snippets: List[SnippetPrediction]) -> Iterator:
        for snippet in snippets:
            self._counters["snippets"].inc()
            values = np.asarray(snippet.valence_arousal, dtype=np.float32)
            yield SnippetPart(uri, int(face_id), int(snippet.snippet_index), snippet.positions.tolist(),
                              snippet.frame_indices.tolist(), snippet.timestamps_s.tolist(),
                              values[:, 0].tolist(), values[:, 1].tolist())
            if self._keep_snippet_rows:
                video_id = compute_video_id(uri)
                for frame_index, timestamp_s, (valence, arousal) in zip(
                        snippet.frame_indices.tolist(), snippet.timestamps_s.tolist(), values.tolist()):
                    yield beam.pvalue.TaggedOutput(SNIPPET_ROWS_TAG, SnippetRow(
                        uri, video_id, int(face_id), int(snippet.snippet_index), frame_index, timestamp_s, valence,
                        arousal))


def _key_part(part) -> Tuple[FaceKey, object]:
    return (part.video_uri, int(part.face_id)), part


def _as_prediction(part: SnippetPart) -> SnippetPrediction:
    return SnippetPrediction(
        snippet_index=int(part.snippet_index),
        positions=np.asarray(part.positions, dtype=np.int64),
        frame_indices=np.asarray(part.frame_indices, dtype=np.int64),
        timestamps_s=np.asarray(part.timestamps_s, dtype=np.float64),
        valence_arousal=np.stack([np.asarray(part.valence, dtype=np.float32),
                                  np.asarray(part.arousal, dtype=np.float32)], axis=1),
    )


class AssembleFaceDoFn(beam.DoFn):
    """((uri, face_id), {snippets, detections}) -> the face's ``FrameRow``s, and its sums on ``face_sums``.

    Stitches the snippets (later ones win, spec 9.1), joins the detection facts by frame index and adds the
    smoothed columns (``mimamo_ops.outputs.smoothing``). Faces of videos listed in the ``failed_uris`` side input
    are dropped.
    """

    def __init__(self, smoothing_size_s: Optional[float]):
        self._smoothing_size_s = smoothing_size_s
        self._rows = Metrics.counter(METRICS_NAMESPACE, "frame_rows")

    def process(self, element, failed_uris: Dict[str, bool]) -> Iterator:
        (uri, face_id), parts = element
        if uri in failed_uris:
            return
        snippets = [_as_prediction(part) for part in parts["snippets"]]
        detections = list(parts["detections"])
        frame_indices, timestamps_s, values = stitch_snippets(snippets)
        detected = np.concatenate([np.asarray(part.frame_indices, dtype=np.int64) for part in detections])
        order = np.argsort(detected, kind="stable")
        detected = detected[order]
        if not np.array_equal(detected, frame_indices):
            raise RuntimeError(f"{uri} face {face_id}: predictions cover {len(frame_indices)} frames but "
                               f"{len(detected)} faces were detected")
        boxes = np.concatenate([np.asarray(part.boxes_xyxy_px, dtype=np.float32).reshape(-1, 4)
                                for part in detections])[order]
        confidences = np.concatenate([np.asarray(part.confidences, dtype=np.float32) for part in detections])[order]
        track_ids = np.concatenate([np.asarray(part.track_ids, dtype=np.int32) for part in detections])[order]
        id_sources = [source for part in detections for source in part.id_sources]
        id_sources = [id_sources[index] for index in order.tolist()]
        smoothed = smooth_moving_average(values, smoothing_window_frames(self._smoothing_size_s,
                                                                         float(detections[0].fps)))
        self._rows.inc(len(frame_indices))
        video_id = compute_video_id(uri)
        for (frame_index, timestamp_s, (valence, arousal), (valence_s, arousal_s), box, confidence, track_id,
             id_source) in zip(frame_indices.tolist(), timestamps_s.tolist(), values.tolist(), smoothed.tolist(),
                               boxes.tolist(), confidences.tolist(), track_ids.tolist(), id_sources):
            yield FrameRow(uri, video_id, int(face_id), track_id, id_source, frame_index, timestamp_s, valence,
                           arousal, valence_s, arousal_s, *box, confidence)
        yield beam.pvalue.TaggedOutput(FACE_SUMS_TAG, FaceSums(
            uri, len(values), float(values[:, 0].astype(np.float64).sum()),
            float(values[:, 1].astype(np.float64).sum())))


def _failed_uri(row: VideoRow) -> Iterator[Tuple[str, bool]]:
    if row.status == "failed":
        yield row.video_uri, True


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


def _key_by_video(row):
    return row.video_uri, row


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

    def expand(self, inputs: beam.PCollection) -> ValenceArousalResult:
        model_config = dataclasses.replace(
            self._model_config, worker_processes=worker_processes_per_machine(inputs.pipeline.options))
        predict_fn = PredictVideoDoFn(model_config, self._face_config, progress_dir=self._progress_dir,
                                      keep_snippet_rows=self._settings.keep_intermediates,
                                      isolation=isolation_config_from(self._settings))
        return (inputs
                | "DistinctVideoUris" >> DistinctVideoUris()
                | "PredictFrames" >> PredictFrames(predict_fn, self._settings.smoothing_size))


class PredictFrames(beam.PTransform):
    """Distinct video URIs -> ``ValenceArousalResult``, with a configured ``PredictVideoDoFn`` (the part of
    ``PredictValenceArousal`` after the URIs are made distinct; tests inject their DoFn here).

    Args:
        predict_fn: the configured :class:`PredictVideoDoFn`.
        smoothing_size_s: moving-average window in seconds, or None.
    """

    def __init__(self, predict_fn: PredictVideoDoFn, smoothing_size_s: Optional[float]):
        super().__init__()
        self._predict_fn = predict_fn
        self._smoothing_size_s = smoothing_size_s

    def expand(self, uris: beam.PCollection) -> ValenceArousalResult:
        predicted = uris | "PredictVideos" >> beam.ParDo(self._predict_fn).with_outputs(
            VIDEOS_TAG, DETECTIONS_TAG, SNIPPET_ROWS_TAG, main="snippets")
        summaries = with_row_type(predicted[VIDEOS_TAG], VideoRow, "TypeVideoRows")
        failed_uris = summaries | "KeyFailedUris" >> beam.FlatMap(_failed_uri)
        snippets = (with_row_type(predicted.snippets, SnippetPart, "TypeSnippets")
                    | "KeySnippets" >> beam.Map(_key_part).with_output_types(Tuple[FaceKey, SnippetPart]))
        detections = (with_row_type(predicted[DETECTIONS_TAG], DetectionPart, "TypeDetections")
                      | "KeyDetections" >> beam.Map(_key_part).with_output_types(Tuple[FaceKey, DetectionPart]))
        assembled = (
            {"snippets": snippets, "detections": detections}
            | "RegroupFaces" >> beam.CoGroupByKey()
            | "AssembleFaces" >> beam.ParDo(
                AssembleFaceDoFn(self._smoothing_size_s), failed_uris=beam.pvalue.AsDict(failed_uris)
            ).with_outputs(FACE_SUMS_TAG, main="frames")
        )
        frames = with_row_type(assembled.frames, FrameRow, "TypeFrameRows")
        sums = (with_row_type(assembled[FACE_SUMS_TAG], FaceSums, "TypeFaceSums")
                | "KeyFaceSums" >> beam.Map(_key_by_video).with_output_types(Tuple[str, FaceSums]))
        videos = (
            {"videos": summaries | "KeyVideoRows" >> beam.Map(_key_by_video).with_output_types(Tuple[str, VideoRow]),
             "sums": sums}
            | "JoinFaceSums" >> beam.CoGroupByKey()
            | "AddVideoMeans" >> beam.MapTuple(add_means).with_output_types(VideoRow)
        )
        return ValenceArousalResult(frames, videos, with_row_type(predicted[SNIPPET_ROWS_TAG], SnippetRow, "TypeSnippetRows"))

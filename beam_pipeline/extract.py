"""``ExtractFaces``: video URIs in, the aligned face crops the model would see out, as typed rows.

For users who want the faces themselves (their own model, a dataset, a check of the face stage): every face of
every frame with its box, landmarks, confidence, ``face_id`` (the person within the video) and ``track_id``
(the continuous segment), and the 112x112 similarity-aligned crop (spec 2.6) as bytes.
"""
import logging
import typing
from typing import Dict, Iterator, Optional, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from beam_pipeline.config import (FACE_SETTINGS, face_config_from, isolation_config_from, read_settings,
                                  video_disk_budget_bytes)
from beam_pipeline.matching import DistinctVideoUris
from beam_pipeline.metrics import METRICS_NAMESPACE
from beam_pipeline.remote_files import open_video_source, storage_reads_checked
from beam_pipeline.faults import classify_error
from beam_pipeline.rows import FaceCropRow, VideoRow, compute_video_id, failed_video_row, with_row_type
from mimamo_ops.faces.isolated_stage import FaceStage, open_face_stage
from mimamo_ops.faces.isolation import IsolationConfig
from mimamo_ops.faces.records import FaceConfig
from mimamo_ops.faces.stages import make_face_extractor
from mimamo_ops.runtime.threads import apply_thread_budget, threads_per_worker

__all__ = ["ExtractFaces", "ExtractFacesDoFn", "FacesResult"]

LOGGER = logging.getLogger(__name__)
_VIDEOS_TAG = "videos"


class FacesResult(typing.NamedTuple):
    """What ``ExtractFaces`` returns: ``faces`` (``FaceCropRow``) and ``videos`` (``VideoRow`` per distinct input,
    failures included; the valence/arousal means are null)."""

    faces: beam.PCollection
    videos: beam.PCollection


def _crop_row(uri: str, video_id: str, face) -> FaceCropRow:
    crop = np.ascontiguousarray(face.aligned, dtype=np.uint8)
    x0, y0, x1, y1 = np.asarray(face.box, dtype=np.float32).tolist()
    return FaceCropRow(uri, video_id, int(face.face_id), int(face.track_id), str(face.id_source),
                       int(face.frame_index), float(face.timestamp_s), x0, y0, x1, y1, float(np.float32(face.confidence)),
                       np.asarray(face.landmarks, dtype=np.float32).reshape(-1).tolist(), int(crop.shape[0]),
                       crop.tobytes())


class ExtractFacesDoFn(beam.DoFn):
    """Video URI -> ``FaceCropRow`` per face and frame, and a ``VideoRow`` on ``videos`` (failures included).

    The face stage is built once per DoFn instance in ``setup()``, in a supervised child process unless
    ``isolation`` says otherwise (``mimamo_ops.faces.isolated_stage``). A video that fails (missing, corrupt, the
    face stage crashing, stalling or over its memory budget) gets a ``failed`` row naming the stage; its crops are
    dropped downstream.
    """

    def __init__(self, face_config: FaceConfig, threads: int = 0, isolation: IsolationConfig = IsolationConfig(),
                 extractor_factory=make_face_extractor, disk_budget_bytes: Optional[int] = None):
        self._face_config = face_config
        self._disk_budget_bytes = disk_budget_bytes
        self._threads = threads
        self._isolation = isolation
        self._extractor_factory = extractor_factory
        self._faces: Optional[FaceStage] = None
        self._counters = {status: Metrics.counter(METRICS_NAMESPACE, f"videos_{status}")
                          for status in ("ok", "no_face", "failed")}
        self._crops = Metrics.counter(METRICS_NAMESPACE, "face_crops")

    def setup(self) -> None:
        threads = self._threads or threads_per_worker(1)
        apply_thread_budget(threads)
        self._faces = open_face_stage(self._face_config, threads, self._isolation, self._extractor_factory)
        self._faces.start()
        self._faces.wait_ready()

    def teardown(self) -> None:
        if self._faces is not None:
            self._faces.close()

    def process(self, uri: str) -> Iterator:
        stage = "read"
        try:
            with open_video_source(uri, self._disk_budget_bytes,
                                   local_file_only=self._face_config.openface_path is not None) as source, \
                    storage_reads_checked(source):
                stage = "probe"
                video = self._faces.open_video(source)
                info, report = video.info, video.report
                stage = "faces"
                video_id = compute_video_id(uri)
                frames = with_face = 0
                face_ids = set()
                for frame in video.frames:
                    frames += 1
                    with_face += bool(frame.faces)
                    for face in frame.faces:
                        face_ids.add(face.face_id)
                        self._crops.inc()
                        yield _crop_row(uri, video_id, face)
        except Exception as error:  # pylint: disable=broad-except  # one bad video must not stop the pipeline
            LOGGER.warning("%s failed at stage %s: %s", uri, stage, error, exc_info=True)
            self._counters["failed"].inc()
            yield beam.pvalue.TaggedOutput(_VIDEOS_TAG, failed_video_row(uri, stage, f"{type(error).__name__}: {error}",
                                                                         error_kind=classify_error(error)))
            return
        status = "ok" if with_face else "no_face"
        self._counters[status].inc()
        yield beam.pvalue.TaggedOutput(_VIDEOS_TAG, VideoRow(
            uri, video_id, status, None, None, None, info.duration_s, info.fps, frames, report.frames_undecodable,
            len(face_ids), with_face, None, None, report.warning))


def _failed_uri(row: VideoRow) -> Iterator[Tuple[str, bool]]:
    if row.status == "failed":
        yield row.video_uri, True


def _keep_unfailed(row: FaceCropRow, failed_uris: Dict[str, bool]) -> Iterator[FaceCropRow]:
    if row.video_uri not in failed_uris:
        yield row


class ExtractFaces(beam.PTransform):
    """Video URIs (``str``, ``FileMetadata`` or ``ReadableFile``) -> aligned face crops with their facts.

    Returns a ``FacesResult``: ``.faces`` (``FaceCropRow``: box, 68 landmarks, confidence, ``face_id``,
    ``track_id`` and the uint8 RGB crop as bytes; ``beam_pipeline.rows.crop_array(row)`` decodes it) and ``.videos``
    (``VideoRow`` per distinct input; a video that fails is a ``failed`` row and has no crops).

    Keyword arguments are the face-stage options of ``mimamo run`` by name (``face_backend``, ``multi_face``,
    ``face_size``, ``mask``, ``openface_path``, ``device``, ``runtime``, ``threads_per_worker``), checked when
    the transform is built.

    Example::

        faces = p | beam.Create(["talk.mp4"]) | ExtractFaces(multi_face=True)
        faces.faces | beam.Select("video_uri", "face_id", "frame_index", "confidence")
    """

    def __init__(self, **settings):
        super().__init__()
        self._settings = read_settings(settings, FACE_SETTINGS, "ExtractFaces")
        self._face_config = face_config_from(self._settings)

    def expand(self, inputs):  # a FacesResult (unannotated: Beam warns on it)
        uris = inputs | "DistinctVideoUris" >> DistinctVideoUris()
        extracted = uris | "ExtractFaces" >> beam.ParDo(
            ExtractFacesDoFn(self._face_config, self._settings.threads_per_worker,
                             isolation_config_from(self._settings),
                             disk_budget_bytes=video_disk_budget_bytes(self._settings))).with_outputs(
                _VIDEOS_TAG, main="faces")
        videos = with_row_type(extracted[_VIDEOS_TAG], VideoRow, "TypeVideoRows")
        failed = videos | "KeyFailedUris" >> beam.FlatMap(_failed_uri)
        faces = (with_row_type(extracted.faces, FaceCropRow, "TypeFaceRows")
                 | "DropFailedVideos" >> beam.FlatMap(_keep_unfailed, failed_uris=beam.pvalue.AsDict(failed))
                 .with_output_types(FaceCropRow))
        return FacesResult(faces, videos)

"""The predict and assemble transforms on real clips with an injected face stage and a light backbone.

The real face stage and ResNet-50 run in ``test_pipeline.py``; here the face stage is a stand-in that serves
known faces (and can fail part-way), so the streaming, failure and stitching rules can be checked exactly.
"""
import functools
from pathlib import Path
from typing import Iterator, List

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_pipeline.predict import FaceSums, PredictFrames, PredictVideoDoFn, add_means
from beam_pipeline.rows import FrameRow, VideoRow, compute_video_id, failed_video_row
from mimamo_ops.errors import VideoError
from mimamo_ops.faces.isolation import IsolationConfig
from mimamo_ops.faces.records import FaceConfig, FaceExtractor
from mimamo_ops.faces.records import FaceRecord, FrameFaces
from mimamo_ops.model.phase import PhaseDifferenceExtractor
from mimamo_ops.model.predictor import MimamoModel, ModelConfig
from mimamo_ops.model.two_stream import TwoStreamRNN
from tests import clips
from tests.parity_recipes import gen_state_dict, render, wave_params

FAIL_AFTER = 75  # faces 0..74: more than 64 + 6 + a compute batch, so the predictor has emitted snippets before the failure


class ProjectionBackbone:
    """Deterministic stand-in for ResNet-50: mean-pooled 16x16 RGB times a seeded matrix, ReLU."""

    def __init__(self):
        self.weight = np.random.default_rng(0).normal(0, 0.05, size=(16 * 16 * 3, 2048)).astype(np.float32)

    def features(self, faces: np.ndarray) -> np.ndarray:
        pooled = faces.reshape(len(faces), 16, 7, 16, 7, 3).mean(axis=(2, 4)).reshape(len(faces), -1)
        return np.maximum(pooled.astype(np.float32) @ self.weight, 0.0)


def load_light_model(config: ModelConfig) -> MimamoModel:
    network = TwoStreamRNN().eval()
    network.load_state_dict(gen_state_dict(network.state_dict(), 3003))
    return MimamoModel(config, ProjectionBackbone(), network, PhaseDifferenceExtractor().eval())


@functools.lru_cache(maxsize=None)
def face_image(index: int) -> np.ndarray:
    """uint8 (112, 112, 3): a smooth texture drifting sub-pixel from frame to frame."""
    rng = np.random.default_rng(5)
    params = [wave_params(rng, 6) for _ in range(3)]
    dy, dx = 1.5 * np.sin(index / 4.0), 2.0 * np.sin(index / 7.0)
    return np.stack([render(p, 112, 112, dy=dy, dx=dx) for p in params], axis=-1)


class ScriptedFaces(FaceExtractor):
    """``good`` videos: 40 frames, face 0 on all but multiples of 5. ``fail`` videos: face 0 on every frame,
    then VideoError at frame FAIL_AFTER."""

    def __init__(self, config: FaceConfig):
        self.config = config

    def extract(self, video_path: str, report=None) -> Iterator[FrameFaces]:
        failing = "fail" in Path(video_path).name
        for index in range(FAIL_AFTER + 1 if failing else 40):
            if failing and index == FAIL_AFTER:
                raise VideoError(f"{video_path}: truncated or damaged: decoding ended after {index} frames")
            faces = ()
            if failing or index % 5:
                faces = (FaceRecord(index, index / 30.0, 0, 0.5 + index / 1000.0, (1.0, 2.0, 3.0 + index, 4.0),
                                    np.zeros((68, 2), np.float32), face_image(index)),)
            yield FrameFaces(index, index / 30.0, faces)


@pytest.fixture(scope="module")
def tiny_clips(tmp_path_factory) -> List[str]:
    """Two real (tiny) video files for the probe; the scripted face stage ignores their pixels."""
    folder = tmp_path_factory.mktemp("tiny")
    return [str(clips.no_face_clip(folder / name, n_frames=4)) for name in ("good.mp4", "fail.mp4")]


def run_predict_frames(uris: List[str], smoothing_size_s=None):
    config = ModelConfig("unused", "unused", backbone_batch_size=8, gru_sequence_snippets=1, snippet_length=16,
                         snippet_stride=16)
    predict_fn = PredictVideoDoFn(config, FaceConfig(), keep_snippet_rows=True, model_loader=load_light_model,
                                  extractor_factory=ScriptedFaces, isolation=IsolationConfig(enabled=False))
    pipeline = BeamTestPipeline()
    outputs = pipeline | beam.Create(uris) | PredictFrames(predict_fn, smoothing_size_s)
    return pipeline, outputs


def test_video_failing_part_way_gets_a_failed_row_and_no_frame_rows(tiny_clips):
    good, failing = tiny_clips
    pipeline, outputs = run_predict_frames([good, failing])
    assert outputs.frames.element_type is FrameRow and outputs.videos.element_type is VideoRow
    frame_keys = outputs.frames | "FrameKeys" >> beam.Map(lambda row: (row.video_uri, row.face_id)) | "DistinctFrameKeys" >> beam.Distinct()
    assert_that(frame_keys, equal_to([(good, 0)]), label="OnlyTheGoodVideoHasFrames")
    snippet_videos = outputs.snippets | "SnippetVideos" >> beam.Map(lambda row: row.video_uri) | "DistinctSnippetVideos" >> beam.Distinct()
    # the failing video had predicted snippets before it failed; they are dropped with its other partial rows
    assert_that(snippet_videos, equal_to([good]), label="OnlyTheGoodVideoHasSnippets")
    statuses = outputs.videos | "Statuses" >> beam.Map(
        lambda s: (Path(s.video_uri).name, s.status, s.error_stage, s.frame_count, s.frames_with_face,
                   (s.error or "").split(":")[0]))
    assert_that(statuses, equal_to([("good.mp4", "ok", None, 40, 32, ""),
                                    ("fail.mp4", "failed", "faces", None, None, "VideoError")]), label="Statuses")
    kinds = outputs.videos | "Kinds" >> beam.Map(lambda s: (Path(s.video_uri).name, s.error_kind))
    assert_that(kinds, equal_to([("good.mp4", None), ("fail.mp4", "permanent")]), label="ErrorKinds")
    pipeline.run().wait_until_finish()


def test_frame_rows_join_predictions_and_detections_by_frame_index(tiny_clips):
    good = tiny_clips[0]
    pipeline, outputs = run_predict_frames([good], smoothing_size_s=0.1)

    def check(frame_rows):
        frame_rows = sorted(frame_rows, key=lambda row: row.frame_index)
        rows = {name: np.asarray([getattr(row, name) for row in frame_rows]) for name in FrameRow._fields}
        frames = rows["frame_index"]
        assert frames.tolist() == [i for i in range(40) if i % 5]
        np.testing.assert_allclose(rows["timestamp_s"], frames / 30.0)
        np.testing.assert_allclose(rows["box_x1_px"], 3.0 + frames)
        np.testing.assert_allclose(rows["confidence"], 0.5 + frames / 1000.0, atol=1e-6)
        # window int(0.1 * 30) = 3 rows: interior rows are the mean of their neighbours
        raw = rows["valence"].astype(np.float64)
        np.testing.assert_allclose(rows["valence_smoothed"][1:-1], (raw[:-2] + raw[1:-1] + raw[2:]) / 3, atol=1e-6)

    assert_that(outputs.frames, check)
    pipeline.run().wait_until_finish()


def test_video_row_means_over_all_faces_and_failures_keep_their_reason():
    ok = VideoRow("a.mp4", compute_video_id("a.mp4"), "ok", None, None, None, 1.0, 30.0, 30, None, 2, 20, None, None,
                  None)
    row = add_means("a.mp4", {"videos": [ok], "sums": [FaceSums("a.mp4", 20, 10.0, 2.0), FaceSums("a.mp4", 10, -4.0, 1.0)]})
    assert row.status == "ok" and row.mean_valence == pytest.approx(0.2)
    assert row.mean_arousal == pytest.approx(0.1)
    failed = failed_video_row("b.mp4", "probe", "VideoError: b.mp4: empty file (0 bytes)")
    row = add_means("b.mp4", {"videos": [failed, ok], "sums": []})
    assert (row.status, row.error_stage, row.mean_valence) == ("failed", "probe", None)
    assert row.error == "VideoError: b.mp4: empty file (0 bytes)"


def test_setup_gives_the_process_its_thread_share_before_loading_the_model(monkeypatch):
    import os

    import cv2
    import torch

    from mimamo_ops.runtime import threads

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    monkeypatch.setattr(threads, "_decoder_threads", threads.decoder_threads())
    seen = []

    def loader(config: ModelConfig) -> MimamoModel:
        seen.append((torch.get_num_threads(), cv2.getNumThreads(), threads.decoder_threads()))
        return load_light_model(config)

    config = ModelConfig("unused-threads", "unused", threads_per_worker=1)
    before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        PredictVideoDoFn(config, FaceConfig(), model_loader=loader, extractor_factory=ScriptedFaces,
                         isolation=IsolationConfig(enabled=False)).setup()
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
    assert seen == [(1, 1, 1)]


class FlakyFaces(ScriptedFaces):
    """``flaky`` videos: the first read of each fails with a reset connection (transient), the next works;
    ``down`` videos: every read fails so. Each read appends a line to ``<video>.attempts`` (the face stage runs in
    its own process, so a count kept in memory would stay there)."""

    def extract(self, video_path: str, report=None) -> Iterator[FrameFaces]:
        name = Path(video_path).name
        with open(f"{video_path}.attempts", "a", encoding="utf-8") as attempts:
            attempts.write("read\n")
        if "down" in name or ("flaky" in name and _attempts(video_path) == 1):
            raise ConnectionResetError(f"{video_path}: connection reset by peer")
        yield from super().extract(video_path, report)


def _attempts(video_path: str) -> int:
    return len(Path(f"{video_path}.attempts").read_text(encoding="utf-8").splitlines())


def test_a_transient_failure_is_tried_again_and_one_that_stays_is_marked_transient(tmp_path, monkeypatch):
    from beam_pipeline import faults

    monkeypatch.setattr(faults, "VIDEO_RETRY", faults.RetryPolicy(attempts=2, first_delay_s=0.01, max_delay_s=0.01))
    uris = [str(clips.no_face_clip(tmp_path / name, n_frames=4)) for name in ("flaky.mp4", "down.mp4")]
    config = ModelConfig("unused", "unused", backbone_batch_size=8, gru_sequence_snippets=1, snippet_length=16,
                         snippet_stride=16)
    predict_fn = PredictVideoDoFn(config, FaceConfig(), model_loader=load_light_model, extractor_factory=FlakyFaces)
    pipeline = BeamTestPipeline()
    outputs = pipeline | beam.Create(uris) | PredictFrames(predict_fn, None)
    rows = outputs.videos | "Rows" >> beam.Map(lambda s: (Path(s.video_uri).name, s.status, s.error_stage,
                                                          s.error_kind, (s.error or "").split(":")[0]))
    assert_that(rows, equal_to([("flaky.mp4", "ok", None, None, ""),
                                ("down.mp4", "failed", "faces", "transient", "ConnectionResetError")]))
    frame_videos = outputs.frames | "FrameVideos" >> beam.Map(lambda row: Path(row.video_uri).name) | beam.Distinct()
    assert_that(frame_videos, equal_to(["flaky.mp4"]), label="OnlyTheRecoveredVideoHasFrames")
    pipeline.run().wait_until_finish()
    assert {Path(uri).name: _attempts(uri) for uri in uris} == {"flaky.mp4": 2, "down.mp4": 2}

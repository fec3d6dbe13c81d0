"""Remote URIs: matching and reading go through Beam's FileSystems, and the face stage gets a temp local copy.

A test-only file system (scheme ``mimamotest://``, backed by a local directory) stands in for gs:// and s3://.
"""
import os
from pathlib import Path
from typing import List

import apache_beam as beam
from apache_beam.io.filesystem import FileMetadata, MatchResult
from apache_beam.io.localfilesystem import LocalFileSystem
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_pipeline.inputs import expand_input
from beam_pipeline.matching import MatchVideos
from beam_pipeline.predict import PredictFrames, PredictVideoDoFn
from mimamo_ops.faces.isolation import IsolationConfig
from mimamo_ops.faces.records import FaceConfig
from mimamo_ops.model.predictor import ModelConfig
from tests import clips
from tests.pipeline.test_transforms import ScriptedFaces, load_light_model

SCHEME = "mimamotest"
PREFIX = f"{SCHEME}://"
SEEN_PATHS: List[str] = []  # local paths the face stage was given (the DirectRunner runs in this process)


def _local(path: str) -> str:
    return path[len(PREFIX):] if path.startswith(PREFIX) else path


class PrefixedLocalFileSystem(LocalFileSystem):
    """``mimamotest:///abs/path`` is the local ``/abs/path``; matches answer with prefixed paths.

    LocalFileSystem's own helpers call these methods with plain local paths too, which pass through.
    """

    @classmethod
    def scheme(cls):
        return SCHEME

    def join(self, basepath, *paths):
        joined = super().join(_local(basepath), *paths)
        return PREFIX + joined if basepath.startswith(PREFIX) else joined

    def open(self, path, *args, **kwargs):
        return super().open(_local(path), *args, **kwargs)

    def exists(self, path):
        return super().exists(_local(path))

    def match(self, patterns, limits=None):
        if not any(pattern.startswith(PREFIX) for pattern in patterns):
            return super().match(patterns, limits)
        results = super().match([_local(pattern) for pattern in patterns], limits)
        return [MatchResult(PREFIX + r.pattern, [FileMetadata(PREFIX + m.path, m.size_in_bytes) for m in
                                                 r.metadata_list]) for r in results]


class RecordingFaces(ScriptedFaces):
    def extract(self, video_path: str, report=None):
        SEEN_PATHS.append(video_path)
        assert os.path.exists(video_path)
        yield from super().extract(video_path)


def test_remote_directory_expands_to_remote_video_uris(tmp_path: Path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "b.txt").write_bytes(b"x")
    assert [match.uri for match in expand_input(f"{PREFIX}{tmp_path}/")] == [f"{PREFIX}{tmp_path}/a.mp4"]


def test_remote_video_is_predicted_from_a_temp_copy_that_is_removed(tmp_path: Path):
    clips.no_face_clip(tmp_path / "good.mp4", n_frames=4)
    uri = f"{PREFIX}{tmp_path}/good.mp4"
    config = ModelConfig("unused", "unused", backbone_batch_size=8, gru_sequence_snippets=1, snippet_length=16,
                         snippet_stride=16)
    predict_fn = PredictVideoDoFn(config, FaceConfig(), model_loader=load_light_model,
                                  extractor_factory=RecordingFaces, isolation=IsolationConfig(enabled=False))
    pipeline = BeamTestPipeline()
    matched = pipeline | beam.Create([f"{PREFIX}{tmp_path}/"]) | MatchVideos((".mp4",))
    outputs = matched.videos | PredictFrames(predict_fn, None)
    rows = outputs.frames | beam.Map(lambda row: row.video_uri) | beam.combiners.Count.PerElement()
    assert_that(rows, equal_to([(uri, 32)]), label="RowsKeepTheRemoteUri")
    statuses = outputs.videos | beam.Map(lambda summary: (summary.video_uri, summary.status))
    assert_that(statuses, equal_to([(uri, "ok")]), label="Status")
    pipeline.run().wait_until_finish()
    assert len(SEEN_PATHS) == 1 and SEEN_PATHS[0] != str(tmp_path / "good.mp4")
    assert not os.path.exists(SEEN_PATHS[0])

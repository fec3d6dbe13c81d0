"""The ``frames`` table says how each row's ``face_id`` was decided (``id_source``)."""
import dataclasses

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_pipeline.predict import PredictFrames, PredictVideoDoFn
from beam_pipeline.rows import FaceCropRow, FrameRow
from beam_pipeline.sinks import FRAMES_SCHEMA
from mimamo_ops.faces.isolation import IsolationConfig
from mimamo_ops.faces.records import ID_SOURCES, FaceConfig
from mimamo_ops.model.predictor import ModelConfig
from tests import clips
from tests.pipeline.test_transforms import ScriptedFaces, load_light_model


def test_id_source_follows_track_id_in_the_rows_and_the_table():
    for fields in (FrameRow._fields, FaceCropRow._fields, tuple(FRAMES_SCHEMA.names)):
        assert fields.index("id_source") == fields.index("track_id") + 1
    assert FRAMES_SCHEMA.field("id_source").type == "string" and not FRAMES_SCHEMA.field("id_source").nullable


class ReidentifiedFaces(ScriptedFaces):
    """The scripted face stage, its face opened on frame 1 and re-identified from frame 20 on."""

    def extract(self, video_path, report=None):
        for frame in super().extract(video_path, report):
            faces = tuple(dataclasses.replace(face, id_source="reid" if face.frame_index >= 20 else "new")
                          for face in frame.faces)
            yield dataclasses.replace(frame, faces=faces)


def test_each_frame_row_carries_its_faces_id_source(tmp_path):
    video = str(clips.no_face_clip(tmp_path / "good.mp4", n_frames=4))
    config = ModelConfig("unused", "unused", backbone_batch_size=8, gru_sequence_snippets=1, snippet_length=16,
                         snippet_stride=16)
    predict_fn = PredictVideoDoFn(config, FaceConfig(), model_loader=load_light_model,
                                  extractor_factory=ReidentifiedFaces, isolation=IsolationConfig(enabled=False))
    with TestPipeline() as pipeline:
        rows = pipeline | beam.Create([video]) | PredictFrames(predict_fn, None)
        sources = rows.frames | beam.Map(lambda row: (row.frame_index, row.id_source))
        assert_that(sources, equal_to([(i, "reid" if i >= 20 else "new") for i in range(40) if i % 5]))
    assert set(ID_SOURCES) >= {"new", "reid", "track"}

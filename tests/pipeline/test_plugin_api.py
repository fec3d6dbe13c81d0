"""The public transforms inside a user's own pipeline: ``PredictValenceArousal``, ``ExtractFaces``,
``PredictAlignedFaces`` (``RunInference``), ``WriteResultTables``, with typed rows that Beam's own sinks, the
DataFrame API and ``beam.Select`` take as they are.

Real clips, the real face stage, networks with synthetic weights in the official formats; the rows are compared
with what ``mimamo run`` writes for the same videos (``test_pipeline.py``'s module run, same settings).
"""
import csv
import logging
import os
from pathlib import Path
from typing import Dict, List

import apache_beam as beam
import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.dataframe.convert import to_dataframe, to_pcollection
from apache_beam.io import fileio
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.typehints.schemas import named_tuple_to_schema

from beam_pipeline import (
    AlignedFace,
    ExtractFaces,
    FaceCropRow,
    FrameRow,
    MatchVideos,
    MimamoModelHandler,
    PredictAlignedFaces,
    PredictValenceArousal,
    VideoRow,
    WriteResultTables,
    read_aligned_face_folder,
)
from beam_pipeline.aligned import predict_sequence
from beam_pipeline.model_loading import MachineBackbone
from beam_pipeline.rows import arrow_schema, crop_array
from beam_pipeline.sinks import FRAMES_SCHEMA, VIDEOS_SCHEMA
from mimamo_ops.faces.records import FaceConfig
from mimamo_ops.faces.stages import make_face_extractor
from tests.pipeline.test_pipeline import KEY_COLUMNS, SMOOTHING_S, VALUE_COLUMNS, read_sorted

ROWS_ATOL = 1e-5  # the issue's bound between the transform's rows and `mimamo run`'s


def settings(weights):
    """The settings of ``test_pipeline.pipeline_flags`` as keyword arguments."""
    checkpoint, backbone = weights
    return dict(checkpoint=str(checkpoint), backbone=str(backbone), multi_face=True, length=16, stride=16,
                smoothing_size=SMOOTHING_S, compute_batch_size=8)


@pytest.fixture(scope="module")
def run_tables(first_run):
    """What ``mimamo run``'s pipeline writes for the clip folder (the same settings as ``settings``)."""
    output, _ = first_run
    return read_sorted(output / "frames", KEY_COLUMNS), read_sorted(output / "videos", ["video_uri"])


@pytest.fixture(scope="module")
def user_pipeline_output(clip_folder, synthetic_weights, tmp_path_factory):
    """A user's pipeline: video URIs from a CSV (``ReadFromText``), ``PredictValenceArousal``, then Beam's own
    ``WriteToParquet`` with the schema it derives from ``FrameRow``; ``.videos`` through ``WriteResultTables``."""
    workdir = tmp_path_factory.mktemp("user")
    listing = workdir / "videos.csv"
    uris = [clip_folder / name for name in ("one_face.mp4", "two_faces.mp4", "no_face.mp4", "corrupt.mp4")]
    uris.append(clip_folder / "missing.mp4")
    with open(listing, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([[str(uri)] for uri in uris])
    predict = PredictValenceArousal(**settings(synthetic_weights))
    with beam.Pipeline() as pipeline:
        result = pipeline | beam.io.ReadFromText(str(listing)) | predict
        _ = result.frames | "WriteFramesWithBeam" >> beam.io.WriteToParquet(
            str(workdir / "frames" / "part"), file_name_suffix=".parquet")
        _ = result | WriteResultTables(str(workdir / "tables"), metadata=predict.run_metadata())
    return workdir


def test_users_pipeline_rows_equal_mimamo_runs_and_read_back_with_duckdb(user_pipeline_output, run_tables):
    expected_frames, _ = run_tables
    frames = read_sorted(user_pipeline_output / "frames", KEY_COLUMNS)
    assert frames.schema.remove_metadata().equals(FRAMES_SCHEMA.remove_metadata())
    assert frames.num_rows == expected_frames.num_rows > 0
    for column in FRAMES_SCHEMA.names:
        if column in VALUE_COLUMNS:
            np.testing.assert_allclose(frames[column].to_numpy(), expected_frames[column].to_numpy(), rtol=0,
                                       atol=ROWS_ATOL, err_msg=column)
        else:
            assert frames[column].equals(expected_frames[column]), column
    counts = duckdb.connect().execute(
        f"SELECT video_uri, face_id, count(*) FROM read_parquet('{user_pipeline_output}/frames/*.parquet') "
        "GROUP BY ALL ORDER BY ALL").fetchall()
    assert [(Path(uri).name, face) for uri, face, _ in counts] == [("one_face.mp4", 0), ("two_faces.mp4", 0),
                                                                  ("two_faces.mp4", 1)]


def test_missing_and_corrupt_inputs_are_failed_video_rows(user_pipeline_output, run_tables):
    videos = read_sorted(user_pipeline_output / "tables" / "videos", ["video_uri"]).to_pylist()
    by_name = {Path(row["video_uri"]).name: row for row in videos}
    assert set(by_name) == {"one_face.mp4", "two_faces.mp4", "no_face.mp4", "corrupt.mp4", "missing.mp4"}
    assert (by_name["missing.mp4"]["status"], by_name["missing.mp4"]["error_stage"]) == ("failed", "read")
    assert "FileNotFoundError" in by_name["missing.mp4"]["error"]
    assert (by_name["corrupt.mp4"]["status"], by_name["corrupt.mp4"]["error_stage"]) == ("failed", "probe")
    assert by_name["no_face.mp4"]["status"] == "no_face" and by_name["one_face.mp4"]["status"] == "ok"
    _, expected_videos = run_tables
    expected = {Path(row["video_uri"]).name: row for row in expected_videos.to_pylist()}
    for name in ("one_face.mp4", "two_faces.mp4", "no_face.mp4"):
        for column in ("status", "frame_count", "faces_found", "frames_with_face"):
            assert by_name[name][column] == expected[name][column], (name, column)
        if by_name[name]["mean_valence"] is not None:
            assert by_name[name]["mean_valence"] == pytest.approx(expected[name]["mean_valence"], abs=ROWS_ATOL)
    footer = pq.read_metadata(next((user_pipeline_output / "tables" / "videos").glob("*.parquet"))).metadata
    assert b"mimamo.checkpoint_sha256" in footer and b"mimamo.options" in footer


def test_match_files_metadata_select_and_dataframe_api_take_the_rows(clip_folder, synthetic_weights):
    """``fileio.MatchFiles`` as input; ``beam.Select`` and a DataFrame-API aggregation over ``.frames``."""
    with TestPipeline() as pipeline:
        result = (pipeline
                  | fileio.MatchFiles(str(clip_folder / "two_faces.mp4"))
                  | PredictValenceArousal(**settings(synthetic_weights)))
        assert result.frames.element_type is FrameRow and result.videos.element_type is VideoRow
        selected = result.frames | beam.Select("face_id", "frame_index") | beam.Map(lambda row: row.face_id)
        assert_that(selected | "CountFaces" >> beam.combiners.Count.PerElement(),
                    equal_to([(0, 24), (1, 24)]), label="SelectGivesBothFaces")
        frames = to_dataframe(result.frames)
        counts = frames[["face_id", "frame_index"]].groupby("face_id").count()
        counted = to_pcollection(counts, include_indexes=True) | beam.Map(lambda row: (row.face_id, row.frame_index))
        assert_that(counted, equal_to([(0, 24), (1, 24)]), label="DataFrameCountsPerFace")
        statuses = result.videos | beam.Map(lambda row: (Path(row.video_uri).name, row.status, row.faces_found))
        assert_that(statuses, equal_to([("two_faces.mp4", "ok", 2)]), label="OneVideoRow")


def test_settings_are_checked_when_the_transform_is_built(synthetic_weights):
    good = settings(synthetic_weights)
    with pytest.raises(ValueError, match=r"^length=0: must be >= 1"):
        PredictValenceArousal(**{**good, "length": 0})
    with pytest.raises(ValueError, match=r"face_backend='retina'"):
        PredictValenceArousal(**{**good, "face_backend": "retina"})
    with pytest.raises(TypeError, match="smoothing_size='0.5': expected int or float"):
        PredictValenceArousal(**{**good, "smoothing_size": "0.5"})
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['lenght'\]"):
        PredictValenceArousal(**good, lenght=16)
    with pytest.raises(ValueError, match="does not exist|no such file"):
        PredictValenceArousal(**{**good, "checkpoint": "/nowhere/model_weights.pth.tar"})
    with pytest.raises(TypeError, match="unexpected keyword"):
        ExtractFaces(length=16)


def test_composing_the_transforms_logs_no_warning(synthetic_weights, clip_folder, caplog):
    """A user's pipeline is built without Beam warnings: Beam takes ``expand``'s return annotation for an output
    type hint and warns on anything but a PCollection, so the transforms that return a result tuple leave it out."""
    with caplog.at_level(logging.WARNING):
        pipeline = beam.Pipeline()
        matched = pipeline | beam.Create([str(clip_folder)]) | MatchVideos()
        matched.videos | "Predict" >> PredictValenceArousal(**settings(synthetic_weights))
        matched.videos | "Extract" >> ExtractFaces()
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == []


def test_row_types_carry_the_parquet_columns_as_beam_schemas():
    assert arrow_schema(FrameRow).equals(FRAMES_SCHEMA) and arrow_schema(VideoRow).equals(VIDEOS_SCHEMA)
    fields = {field.name: field.type for field in named_tuple_to_schema(FrameRow).fields}
    assert list(fields) == FRAMES_SCHEMA.names
    assert fields["face_id"].atomic_type != fields["frame_index"].atomic_type  # INT32 against INT64
    assert not fields["valence"].nullable and named_tuple_to_schema(VideoRow).fields[3].type.nullable


@pytest.fixture(scope="module")
def extracted(clip_folder, tmp_path_factory):
    """``ExtractFaces`` on the two-face clip and a missing file, written with Beam's ``WriteToParquet`` (schemas
    derived from the row types) and read back: (crop rows, video rows)."""
    out = tmp_path_factory.mktemp("extracted")
    with beam.Pipeline() as pipeline:
        result = (pipeline
                  | beam.Create([str(clip_folder / "two_faces.mp4"), str(clip_folder / "missing.mp4")])
                  | ExtractFaces(multi_face=True))
        _ = result.faces | "WriteFaces" >> beam.io.WriteToParquet(str(out / "faces"), file_name_suffix=".parquet")
        _ = result.videos | "WriteVideos" >> beam.io.WriteToParquet(str(out / "videos"), file_name_suffix=".parquet")
    faces = [FaceCropRow(**row) for row in pq.read_table(next(out.glob("faces*.parquet"))).to_pylist()]
    videos = [VideoRow(**row) for row in pq.read_table(next(out.glob("videos*.parquet"))).to_pylist()]
    return faces, videos


def test_extract_faces_gives_the_face_stages_crops_as_rows(extracted, clip_folder):
    faces, videos = extracted
    assert faces and all(isinstance(row.crop, bytes) and len(row.landmarks_xy_px) == 136 for row in faces)
    uri = str(clip_folder / "two_faces.mp4")
    expected = {(face.face_id, face.frame_index): face
                for frame in make_face_extractor(FaceConfig(multi_face=True)).extract(uri) for face in frame.faces}
    assert {(row.face_id, row.frame_index) for row in faces} == set(expected)
    for row in faces:
        face = expected[(row.face_id, row.frame_index)]
        np.testing.assert_array_equal(crop_array(row), face.aligned)
        np.testing.assert_allclose(np.reshape(row.landmarks_xy_px, (68, 2)), face.landmarks, atol=1e-4)
        assert row.track_id == face.track_id and row.video_uri == uri
    statuses = sorted((Path(row.video_uri).name, row.status, row.error_stage) for row in videos)
    assert statuses == [("missing.mp4", "failed", "read"), ("two_faces.mp4", "ok", None)]


def _sequences(extracted) -> Dict[str, List[AlignedFace]]:
    """The extracted crops as one sequence per face, keyed ``two_faces/<face_id>``."""
    faces, _ = extracted
    sequences = {}
    for row in sorted(faces, key=lambda row: (row.face_id, row.frame_index)):
        sequences.setdefault(f"two_faces/{row.face_id}", []).append(
            AlignedFace.from_array(row.frame_index, row.timestamp_s, crop_array(row)))
    return sequences


def _model_settings(weights) -> Dict[str, object]:
    checkpoint, backbone = weights
    return dict(checkpoint=str(checkpoint), backbone=str(backbone), length=16, stride=16, compute_batch_size=8)


def test_the_model_handler_with_one_backbone_per_machine_gives_the_same_numbers(extracted, synthetic_weights):
    """``backbone_sharing="machine"``: the handler's model uses the machine's backbone (hosted here, the first
    process to ask), fed by both sequences, with the numbers of a backbone of its own."""
    sequences = _sequences(extracted)
    own = MimamoModelHandler(**_model_settings(synthetic_weights))
    shared = MimamoModelHandler(**_model_settings(synthetic_weights), backbone_sharing="machine")
    model = shared.load_model()
    assert isinstance(model.backbone, MachineBackbone) and model.backbone.stats()["pid"] == os.getpid()
    expected = own.run_inference(list(sequences.values()), own.load_model())
    for rows, wanted in zip(shared.run_inference(list(sequences.values()), model), expected):
        assert [row.frame_index for row in rows] == [row.frame_index for row in wanted]
        np.testing.assert_allclose([(row.valence, row.arousal) for row in rows],
                                   [(row.valence, row.arousal) for row in wanted], rtol=0, atol=1e-5)
    assert model.backbone.stats()["faces"] == sum(len(faces) for faces in sequences.values())


def test_predict_aligned_faces_on_the_crops_gives_mimamo_runs_numbers(extracted, synthetic_weights, run_tables,
                                                                      clip_folder):
    """``RunInference`` with ``MimamoModelHandler``, keyed by the user's key, on ``ExtractFaces``' crops: the raw
    valence/arousal ``mimamo run`` wrote for the same faces, whatever the batch of sequences."""
    sequences = _sequences(extracted)
    model_settings = _model_settings(synthetic_weights)
    handler = MimamoModelHandler(**model_settings)
    model = handler.load_model()
    alone = {key: predict_sequence(model, faces) for key, faces in sequences.items()}
    together = dict(zip(sequences, handler.run_inference(list(sequences.values()), model)))
    for key, rows in alone.items():
        np.testing.assert_allclose([row.valence for row in together[key]], [row.valence for row in rows], atol=1e-6)
    frames, _ = run_tables
    uri = str(clip_folder / "two_faces.mp4")
    expected = [(f"two_faces/{row['face_id']}", row["frame_index"], row["valence"], row["arousal"])
                for row in frames.to_pylist() if row["video_uri"] == uri]

    def close(actual, wanted):
        return actual[:2] == wanted[:2] and np.allclose(actual[2:], wanted[2:], rtol=0, atol=ROWS_ATOL)

    with TestPipeline() as pipeline:
        rows = pipeline | beam.Create(list(sequences.items())) | PredictAlignedFaces(**model_settings)
        values = rows | beam.Map(lambda row: (row.key, row.frame_index, row.valence, row.arousal))
        assert_that(values, equal_to(expected, equals_fn=close))


def test_openface_folders_give_the_predict_aligned_commands_numbers(clip_folder, synthetic_weights, tmp_path):
    """A folder in OpenFace's layout (``mimamo faces`` writes one) through ``read_aligned_face_folder`` and
    ``PredictAlignedFaces``: the rows ``mimamo predict-aligned`` writes for the same folder."""
    from beam_pipeline.cli import main as cli  # pylint: disable=import-outside-toplevel

    checkpoint, backbone = (str(path) for path in synthetic_weights)
    folder = tmp_path / "openface"
    assert cli.main(["faces", str(clip_folder / "one_face.mp4"), "--output", str(folder)]) == 0
    assert cli.main(["predict-aligned", str(folder), "--output", str(tmp_path / "rows.csv"), "--checkpoint",
                     checkpoint, "--backbone", backbone]) == 0
    with open(tmp_path / "rows.csv", newline="", encoding="utf-8") as handle:
        expected = [(str(folder), int(row["frame"]), float(row["valence"]), float(row["arousal"]))
                    for row in csv.DictReader(handle)]
    assert len(expected) == 24

    def close(actual, wanted):
        return actual[:2] == wanted[:2] and np.allclose(actual[2:], wanted[2:], rtol=0, atol=1e-6)

    with TestPipeline() as pipeline:
        rows = (pipeline
                | beam.Create([str(folder)])
                | beam.Map(read_aligned_face_folder)
                | PredictAlignedFaces(checkpoint=checkpoint, backbone=backbone))
        values = rows | beam.Map(lambda row: (row.key, row.frame_index, row.valence, row.arousal))
        assert_that(values, equal_to(expected, equals_fn=close))

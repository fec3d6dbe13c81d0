"""Work units (``beam_pipeline.units``): a video cut into units gives the rows of the unsplit run.

The clip is cut together from real photographs (tests/data/faces, as in ``tests/ops/test_faces_identity.py``):
Biden, a cut to Obama, a cut back to Biden in another photo, then a cut to a moving face, 20 frames each. With
``--work_unit_s 0.5`` (at most 15 frames at 30 fps: 6 units of 14 frames) the units end inside shots and at cuts
alike, and short snippets with two per GRU sequence make the GRU's sequences cross unit ends. The same clip on the
Cloud Storage emulator checks the units' seeks in a video streamed from storage.
"""
import logging
from pathlib import Path
from typing import List

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.beam_compat import use_anonymous_gcs_for_emulator
from beam_pipeline.predict import PredictVideoDoFn
from beam_pipeline.rows import VideoRow
from beam_pipeline.run import run
from beam_pipeline.units import (EncodeUnitDoFn, JoinUnitsDoFn, PendingVideo, UnitPlanner, UnitResult,
                                 unit_frames)
from beam_pipeline.video_parts import CollectedFace, VideoParts
from mimamo_ops.faces.records import FaceConfig, FaceRecord
from mimamo_ops.model.predictor import ModelConfig
from tests import clips
from tests.local_servers import BUCKET
from tests.ops.test_faces_identity import SHOTS, shot_frames
from tests.pipeline.test_cloud_storage import upload

SHOT_FRAMES = 20
UNIT_S = 0.5  # at most 15 frames a unit
KEY = ["face_id", "frame_index"]


@pytest.fixture(scope="module")
def shots_clip(tmp_path_factory) -> Path:
    frames = [frame for name, face in SHOTS for frame in shot_frames(name, face, SHOT_FRAMES)]
    frames += clips.moving_face_frames(SHOT_FRAMES, (640, 360), variant=1)
    return clips.write_clip(tmp_path_factory.mktemp("units") / "shots.mp4", frames)


def _flags(clip, weights, output: Path, work_unit_s: float) -> List[str]:
    checkpoint, backbone = weights
    return ["--input", str(clip), "--output", str(output), "--checkpoint", str(checkpoint), "--backbone",
            str(backbone), "--multi_face", "--length", "8", "--stride", "8", "--gru_sequence_snippets", "2",
            "--smoothing_size", "0.2", "--compute_batch_size", "8", "--keep_intermediates",
            "--work_unit_s", str(work_unit_s)]


@pytest.fixture(scope="module")
def both_runs(shots_clip, synthetic_weights, tmp_path_factory):
    """{work_unit_s: (output folder, pipeline result)} for the unsplit run (0) and the run in units."""
    runs = {}
    for work_unit_s in (0, UNIT_S):
        output = tmp_path_factory.mktemp(f"units{work_unit_s}")
        runs[work_unit_s] = output, run(_flags(shots_clip, synthetic_weights, output, work_unit_s))
    return runs


def _table(output: Path, name: str, key: List[str]) -> pa.Table:
    return pq.read_table(output / name).sort_by([(column, "ascending") for column in key])


def _counter(result, name: str) -> int:
    counters = result.metrics().query(MetricsFilter().with_namespace("mimamo").with_name(name))["counters"]
    return sum(counter.committed for counter in counters)


def _assert_same_rows(unsplit: pa.Table, split: pa.Table, skip=()) -> None:
    assert split.num_rows == unsplit.num_rows > 0
    assert split.column_names == unsplit.column_names
    for name in set(unsplit.column_names) - set(skip):
        expected, got = unsplit.column(name).to_numpy(), split.column(name).to_numpy()
        if expected.dtype.kind == "f":
            # The join recomputes the block ends with the same ops (measured: identical bits on AVX-512 and AVX2);
            # 1e-5 is the bound, room for a BLAS that rounds batches of another size differently.
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5, err_msg=name)
        else:
            assert got.tolist() == expected.tolist(), name


def test_a_video_in_units_gives_the_rows_and_ids_of_the_unsplit_run(both_runs):
    unsplit_output, unsplit_result = both_runs[0]
    split_output, split_result = both_runs[UNIT_S]
    assert _counter(unsplit_result, "work_units") == 0
    assert _counter(split_result, "work_units") == -(-4 * SHOT_FRAMES // 15)  # 80 frames in units of 15
    frames = _table(split_output, "frames", KEY)
    _assert_same_rows(_table(unsplit_output, "frames", KEY), frames)
    # the clip's people and shots are all there: Biden's return keeps his id, each shot is its own track
    assert len(set(frames.column("face_id").to_pylist())) == 3
    assert len(set(frames.column("track_id").to_pylist())) == 4
    snippet_key = ["face_id", "snippet_index", "frame_index"]
    _assert_same_rows(_table(unsplit_output, "snippets", snippet_key), _table(split_output, "snippets", snippet_key))
    videos = [_table(output, "videos", ["video_uri"]).to_pylist() for output in (unsplit_output, split_output)]
    assert videos[1] == videos[0]
    assert videos[1][0]["status"] == "ok" and videos[1][0]["frame_count"] == 4 * SHOT_FRAMES


def test_the_units_of_a_remote_video_read_it_from_storage_and_give_the_same_rows(
        shots_clip, synthetic_weights, both_runs, gcs_emulator, tmp_path):
    """Each unit seeks in the video on the Cloud Storage emulator (streamed, ``iter_frames_in_span``)."""
    uri = f"gs://{BUCKET}/units/shots.mp4"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
        patch.setenv("MIMAMO_CACHE_DIR", str(tmp_path / "cache"))
        use_anonymous_gcs_for_emulator()
        FileSystems.set_options(PipelineOptions([]))
        upload(shots_clip, uri)
        result = run(_flags(uri, synthetic_weights, tmp_path / "out", UNIT_S))
    assert _counter(result, "work_units") == -(-4 * SHOT_FRAMES // 15) and _counter(result, "work_units_failed") == 0
    _assert_same_rows(_table(both_runs[0][0], "frames", KEY), _table(tmp_path / "out", "frames", KEY),
                      skip=("video_uri", "video_id"))


def test_two_videos_in_units_on_the_machine_s_one_backbone_give_the_rows_of_per_track_batches(
        shots_clip, synthetic_weights, both_runs, tmp_path, caplog):
    """``--backbone_sharing machine`` with two videos in flight on two worker threads: their units' faces go
    through one backbone in shared batches (``BatchingBackbone``; that faces of different tracks share passes
    is shown in ``tests/ops/test_backbone_batching.py``), and each video's rows are the per-track run's."""
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(shots_clip.read_bytes())
    flags = _flags(shots_clip, synthetic_weights, tmp_path / "out", UNIT_S) + [
        "--input", str(copy), "--backbone_sharing", "machine", "--direct_num_workers", "2",
        "--direct_running_mode", "multi_threading"]
    with caplog.at_level(logging.INFO, logger="beam_pipeline.model_loading"):
        result = run(flags)
    loads = [record for record in caplog.records if record.getMessage().startswith("one backbone for this machine")]
    assert len(loads) == 1, [record.getMessage() for record in loads]
    assert _counter(result, "work_units") == 2 * -(-4 * SHOT_FRAMES // 15)
    frames = _table(tmp_path / "out", "frames", ["video_uri"] + KEY)
    reference = _table(both_runs[0][0], "frames", KEY)
    for uri in (str(shots_clip), str(copy)):
        video = frames.filter(pa.compute.equal(frames.column("video_uri"), uri))
        _assert_same_rows(reference, video, skip=("video_uri", "video_id"))


def test_a_video_damaged_in_the_middle_gives_in_units_the_rows_of_the_unsplit_run(synthetic_weights, tmp_path):
    """50 kB of garbage in the middle of the clip: the unsplit run skips the frames that do not decode; a unit
    whose seek runs into them (``VideoError`` after the seek) decodes from the start instead, counting frames as
    the face stage did, and the video keeps its rows (it was a failed row, stage ``encode``, before)."""
    clip = clips.damaged_middle_clip(tmp_path / "damaged.mp4", n_frames=150)
    outputs = {}
    for work_unit_s in (0, 1.0):
        outputs[work_unit_s] = tmp_path / f"out{work_unit_s}"
        result = run(_flags(clip, synthetic_weights, outputs[work_unit_s], work_unit_s))
    assert _counter(result, "work_units") >= 4 and _counter(result, "work_units_failed") == 0
    videos = [_table(output, "videos", ["video_uri"]).to_pylist() for output in outputs.values()]
    assert videos[1] == videos[0] and videos[1][0]["status"] == "ok" and videos[1][0]["frames_undecodable"] > 0
    _assert_same_rows(_table(outputs[0], "frames", KEY), _table(outputs[1.0], "frames", KEY))


def _record(frame_index: int, face_id: int) -> FaceRecord:
    return FaceRecord(frame_index=frame_index, timestamp_s=frame_index / 30, face_id=face_id, confidence=0.9,
                      box=(0.0, 0.0, 1.0, 1.0), landmarks=np.zeros((68, 2), np.float32),
                      aligned=np.zeros((4, 4, 3), np.uint8))


def test_the_planner_cuts_units_of_at_most_so_many_frames_or_faces_and_counts_each_face_s_positions():
    planner = UnitPlanner("v.mp4", attempt=1, frames_per_unit=10)
    units = []
    for frame in range(0, 34):
        faces = [_record(frame, 0)] if frame % 2 == 0 else []
        if 12 <= frame < 25:
            faces.append(_record(frame, 1))
        units += planner.add_frame(frame, faces)
    units += planner.finish()
    # 10 frames (5 faces), then while two faces are in view units close at their 10th face, then 10 frames again
    assert [(unit.index, unit.start_frame, unit.end_frame) for unit in units] == [
        (0, 0, 10), (1, 10, 18), (2, 18, 25), (3, 25, 34)]
    assert [sum(len(faces.frame_indices) for faces in unit.faces.values()) for unit in units] == [5, 10, 11, 4]
    assert planner.units == 4 and planner.positions == {0: 17, 1: 13}
    for face_id in (0, 1):
        pieces = [unit.faces[face_id] for unit in units if face_id in unit.faces]
        starts = [piece.first_position for piece in pieces]
        lengths = [len(piece.frame_indices) for piece in pieces]
        assert starts == list(np.cumsum([0] + lengths[:-1]))
        frames = np.concatenate([piece.frame_indices for piece in pieces])
        assert np.all(np.diff(frames) > 0)
        for unit in units:
            if face_id in unit.faces:
                assert np.all((unit.faces[face_id].frame_indices >= unit.start_frame)
                              & (unit.faces[face_id].frame_indices < unit.end_frame))
    assert units[1].faces[1].first_position == 0 and units[2].faces[1].first_position == 6


def test_a_last_frame_that_fills_a_unit_leaves_no_empty_unit_after_it():
    """360 one-face frames in units of 15 are 24 units, not 24 and an empty one (the Flink test saw 25)."""
    planner = UnitPlanner("v.mp4", attempt=1, frames_per_unit=15)
    units = [unit for frame in range(360) for unit in planner.add_frame(frame, [_record(frame, 0)])]
    units += planner.finish()
    assert len(units) == planner.units == 24 and units[-1].end_frame == 360
    assert all(len(unit.faces[0].frame_indices) == 15 for unit in units)


def test_a_video_is_cut_into_the_fewest_units_of_one_length():
    assert unit_frames(60, 30, 1800) == 0  # fits in one unit
    assert unit_frames(60, 30, 2100) == 1050  # 70 s: two units of 35 s, not 60 s and 10 s
    assert unit_frames(60, 30, 3601) == 1201
    assert unit_frames(60, 25, 9000) == 1500
    assert unit_frames(0, 30, 10 ** 6) == 0  # never split


def _pending(uri: str, units: int) -> PendingVideo:
    row = VideoRow(video_uri=uri, video_id="x", status="ok", error_stage=None, error=None, error_kind=None,
                   duration_s=1.0, fps=30.0, frame_count=30, frames_undecodable=0, faces_found=1,
                   frames_with_face=30, mean_valence=None, mean_arousal=None, warning=None)
    return PendingVideo(VideoParts(row, {0: CollectedFace()}, []), attempt=1, units=units, positions={0: 30})


def test_a_unit_whose_video_is_gone_makes_the_video_a_failed_row_naming_the_file(shots_clip, synthetic_weights,
                                                                                   tmp_path):
    checkpoint, backbone = synthetic_weights
    config = ModelConfig(str(checkpoint), str(backbone), backbone_batch_size=8, snippet_length=8, snippet_stride=8)
    gone = tmp_path / "gone.mp4"
    gone.write_bytes(shots_clip.read_bytes())
    planner = UnitPlanner(str(gone), attempt=1, frames_per_unit=15)
    units = planner.add_frame(0, [_record(0, 0)]) + planner.add_frame(20, [_record(20, 0)]) + planner.finish()
    gone.unlink()  # the file goes away between the face stage and the units (a real missing file)
    encode = EncodeUnitDoFn(config, FaceConfig())
    encode.setup()
    results = [result for unit in units for result in encode.process(unit)]
    assert [result.index for result in results] == [0, 1]
    assert all(result.error and "gone.mp4" in result.error for result in results)
    assert {result.error_kind for result in results} == {"permanent"}
    join = JoinUnitsDoFn(config)
    join.setup()
    (parts,) = join.process((str(gone), {"pending": [_pending(str(gone), 2)], "units": results}))
    assert parts.video.status == "failed" and parts.video.error_stage == "encode"
    assert "gone.mp4" in parts.video.error and not parts.faces
    # a unit that never arrives fails the video too; a unit of an earlier attempt does not count
    units_in = [UnitResult(str(gone), 1, 0, {}), UnitResult(str(gone), 0, 1, {})]
    (parts,) = join.process((str(gone), {"pending": [_pending(str(gone), 2)], "units": units_in}))
    assert parts.video.status == "failed" and parts.video.error_stage == "join"
    assert "units [1] of 2 never arrived" in parts.video.error
    # a video whose face stage failed has no pending entry: its units are dropped, its failed row came already
    assert list(join.process((str(gone), {"pending": [], "units": results}))) == []


class _Networks:
    """Stands in for the loaded networks (only their identity matters here)."""


def test_the_unit_steps_take_the_model_the_prediction_holds_in_the_process(synthetic_weights):
    checkpoint, backbone = synthetic_weights
    loads = []

    def loader(config):
        loads.append(config)
        return _Networks()

    predict = PredictVideoDoFn(ModelConfig(str(checkpoint), str(backbone)), FaceConfig(), model_loader=loader,
                               work_unit_s=UNIT_S)
    encode, join = predict.unit_steps()
    encode.setup()
    join.setup()
    assert len(loads) == 1
    # pylint: disable=protected-access  # which object each step holds
    assert encode._model is join._model

"""A video whose middle is damaged: the pipeline keeps every frame that decodes and records the damage.

The clip is the moving face (48 frames, about 150 kB) with 16 kB of its middle overwritten, run through the
real face stage and the seeded networks; the undamaged clip is the reference for true indices and times.
"""
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from beam_pipeline.run import run
from mimamo_ops.decoding.video import DecodeReport, iter_frames
from mimamo_ops.faces.records import FaceConfig
from mimamo_ops.faces.stages import make_face_extractor
from tests import clips

N_FRAMES = 48


@pytest.fixture(scope="module")
def damaged_run(tmp_path_factory, synthetic_weights):
    folder = tmp_path_factory.mktemp("damaged")
    damaged = clips.damaged_middle_clip(folder / "damaged.mp4", n_frames=N_FRAMES, damaged_bytes=16_000)
    intact = clips.moving_face_clip(folder / "intact.mp4", n_frames=N_FRAMES)
    output = tmp_path_factory.mktemp("damaged-out")
    checkpoint, backbone = synthetic_weights
    run(["--input", str(damaged), "--output", str(output), "--checkpoint", str(checkpoint), "--backbone",
         str(backbone), "--length", "16", "--stride", "16", "--compute_batch_size", "8"])
    return damaged, intact, output


def test_rows_exist_for_the_decodable_frames_with_their_true_indices_and_times(damaged_run):
    damaged, intact, output = damaged_run
    report = DecodeReport()
    decodable = {frame.index for frame in iter_frames(damaged, report=report)}
    with_face = {frame.index for frame in make_face_extractor(FaceConfig()).extract(str(damaged)) if frame.faces}
    intact_times = {frame.index: frame.timestamp_s for frame in iter_frames(intact)}

    frames = pq.read_table(output / "frames").sort_by("frame_index")

    indices = frames["frame_index"].to_pylist()
    assert 0 < report.frames_undecodable < N_FRAMES // 2 and len(decodable) == N_FRAMES - report.frames_undecodable
    assert set(indices) == with_face and with_face <= decodable and len(with_face) > N_FRAMES // 2
    assert max(indices) > min(set(range(N_FRAMES)) - decodable)  # rows after the damage too
    assert frames["timestamp_s"].to_pylist() == [intact_times[index] for index in indices]


def test_the_videos_row_is_ok_and_records_the_damage(damaged_run):
    damaged, _, output = damaged_run
    report = DecodeReport()
    decoded = sum(1 for _ in iter_frames(damaged, report=report))

    (row,) = pq.read_table(output / "videos").to_pylist()

    assert (row["video_uri"], row["status"], row["error"]) == (str(damaged), "ok", None)
    assert (row["frame_count"], row["frames_undecodable"]) == (decoded, N_FRAMES - decoded)
    assert row["warning"] == report.warning
    assert row["warning"].startswith(f"{N_FRAMES - decoded} of {N_FRAMES} frames do not decode and were skipped")


def test_an_intact_video_has_no_damage_recorded(tmp_path, synthetic_weights):
    path = clips.no_face_clip(tmp_path / "plain.mp4", n_frames=12)
    checkpoint, backbone = synthetic_weights
    run(["--input", str(path), "--output", str(tmp_path / "out"), "--checkpoint", str(checkpoint), "--backbone",
         str(backbone)])

    (row,) = pq.read_table(Path(tmp_path / "out" / "videos")).to_pylist()

    assert (row["status"], row["frame_count"], row["frames_undecodable"], row["warning"]) == ("no_face", 12, 0, None)

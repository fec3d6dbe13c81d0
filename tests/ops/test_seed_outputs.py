"""The seed-format per-video outputs: ``<stem>_va_preds.csv`` (spec 11.2 step 7) with true timestamps."""
import csv

import numpy as np
import pytest
from PIL import Image

from mimamo_ops.outputs.seed_outputs import build_seed_rows, seed_output_stem, write_seed_outputs
from mimamo_ops.outputs.series import FaceSeries


def make_track(face_id: int, frames, timestamps_s=None, offset: float = 0.0) -> FaceSeries:
    frames = np.asarray(frames, dtype=np.int64)
    timestamps_s = frames / 30.0 if timestamps_s is None else np.asarray(timestamps_s, dtype=np.float64)
    raw = np.stack([np.sin(frames / 5.0) * 0.7 + offset, np.cos(frames / 7.0) * 0.6], 1).astype(np.float32)
    smoothed = (raw * 0.5).astype(np.float32)
    return FaceSeries(face_id, frames, timestamps_s, raw, smoothed)


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_one_face_csv_has_exactly_the_seed_columns_and_true_timestamps(tmp_path):
    frames = [0, 1, 2, 7, 8, 9]  # a gap of 4 frames without the face
    timestamps_s = [0.0, 1 / 15, 0.1, 0.4, 0.4 + 1 / 15, 0.5]  # variable frame rate
    track = make_track(0, frames, timestamps_s)
    csv_path, png_path = write_seed_outputs(tmp_path, "/videos/talk.mp4", [track], with_plot=False)
    assert csv_path == tmp_path / "talk_va_preds.csv" and png_path is None
    lines = read_csv(csv_path)
    assert lines[0] == ["valence", "arousal", "s"]
    values = np.array(lines[1:], dtype=np.float64)
    assert values.shape == (6, 3)
    np.testing.assert_array_equal(values[:, 2], np.asarray(timestamps_s))  # s round-trips exactly
    np.testing.assert_array_equal(values[:, :2].astype(np.float32), track.smoothed_valence_arousal)


def test_several_faces_add_a_face_column_and_interleave_by_frame():
    first = make_track(0, [0, 1, 3])
    second = make_track(1, [1, 2, 3], offset=0.1)
    header, rows = build_seed_rows([second, first])
    assert header == ("valence", "arousal", "s", "face")
    assert [(row[2], row[3]) for row in rows] == [
        (repr(0.0), "0"), (repr(1 / 30), "0"), (repr(1 / 30), "1"), (repr(2 / 30), "1"), (repr(3 / 30), "0"),
        (repr(3 / 30), "1"),
    ]
    assert np.float32(rows[2][0]) == second.smoothed_valence_arousal[0, 0]  # float32 text round-trips exactly


def test_video_without_face_gets_a_header_only_csv_and_a_plot(tmp_path):
    csv_path, png_path = write_seed_outputs(tmp_path, "gs://bucket/dir/silent.webm", [])
    assert read_csv(csv_path) == [["valence", "arousal", "s"]]
    assert png_path == tmp_path / "silent_va_trend.png"
    with Image.open(png_path) as image:
        assert image.size == (1200, 600)


def test_write_seed_outputs_writes_both_files_without_partial_leftovers(tmp_path):
    out_dir = tmp_path / "new" / "results"
    csv_path, png_path = write_seed_outputs(out_dir, "clip.avi", [make_track(0, range(40))], duration_s=1.5,
                                            frame_count=45)
    assert sorted(p.name for p in out_dir.iterdir()) == ["clip_va_preds.csv", "clip_va_trend.png"]
    assert len(read_csv(csv_path)) == 41
    assert png_path.stat().st_size > 10_000


@pytest.mark.parametrize("uri, stem", [
    ("/data/a/talk.mp4", "talk"),
    ("gs://bucket/x/talk.v2.mkv", "talk.v2"),
    ("file:///tmp/clip", "clip"),
    ("C:\\videos\\win.mp4", "win"),
])
def test_stem_is_the_file_name_without_extension(uri, stem):
    assert seed_output_stem(uri) == stem


def test_face_series_rejects_mismatched_shapes_and_unsorted_frames():
    with pytest.raises(ValueError, match="valence_arousal must have shape"):
        FaceSeries(0, np.arange(3), np.zeros(3), np.zeros((2, 2), np.float32), np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="strictly increasing"):
        FaceSeries(0, np.array([0, 2, 2]), np.zeros(3), np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="boxes_px"):
        FaceSeries(0, np.arange(3), np.zeros(3), np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32),
                   boxes_px=np.zeros((3, 2), np.float32))

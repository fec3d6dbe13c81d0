"""``mimamo faces``: crops in OpenFace's layout, the CSV, the no-face message and one-line errors."""
import csv

import cv2
import numpy as np

from beam_pipeline.cli.main import main
from tests import clips


def test_faces_command_writes_openface_layout_crops_and_csv(tmp_path, capsys):
    video = clips.two_faces_clip(tmp_path / "two.people.mp4", n_frames=12)
    # The two faces of this clip cross the frame at 2/3 of their size per frame: a dlib-tracker test clip.
    assert main(["faces", str(video), "--output", str(tmp_path / "out"), "--multi-face", "--face-backend", "dlib"]) == 0
    aligned = tmp_path / "out" / "two.people_aligned"
    names = sorted(p.name for p in aligned.iterdir())
    assert names == sorted(f"frame_det_{face:02d}_{frame:06d}.bmp" for face in (0, 1) for frame in range(1, 13))
    crop = cv2.imread(str(aligned / "frame_det_00_000001.bmp"))
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    with open(tmp_path / "out" / "two.people.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 24
    assert list(rows[0])[:10] == ["frame", "face_id", "track_id", "timestamp", "confidence", "success", "box_x0",
                                  "box_y0", "box_x1", "box_y1"]
    assert "x_67" in rows[0] and "y_67" in rows[0]
    assert {(int(r["frame"]), int(r["face_id"])) for r in rows} == {(f, i) for f in range(1, 13) for i in (0, 1)}
    # Two people, each seen throughout: one continuous track each, numbered like the people here.
    assert {(int(r["face_id"]), int(r["track_id"])) for r in rows} == {(0, 0), (1, 1)}
    assert all(r["success"] == "1" for r in rows)
    assert abs(float(rows[-1]["timestamp"]) - 11 / 30) < 1e-6
    assert "24 crops of 2 face(s) in 12 of 12 frames" in capsys.readouterr().out


def test_faces_command_on_a_face_free_clip_writes_no_crops_and_says_so(tmp_path, capsys):
    video = clips.no_face_clip(tmp_path / "empty_room.mp4", n_frames=6)
    assert main(["faces", str(video), "--output", str(tmp_path / "out")]) == 0
    assert list((tmp_path / "out" / "empty_room_aligned").iterdir()) == []
    assert "no face found in 6 frames; no crops written" in capsys.readouterr().out
    with open(tmp_path / "out" / "empty_room.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["success"] for r in rows] == ["0"] * 6 and [int(r["frame"]) for r in rows] == list(range(1, 7))
    assert all(r["face_id"] == "" and r["track_id"] == "" for r in rows)


def test_faces_command_reports_a_bad_file_as_one_line_error(tmp_path, capsys):
    video = clips.truncated_clip(tmp_path / "broken.mp4", faststart=False, n_frames=10)
    assert main(["faces", str(video), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mimamo faces: error:") and "broken.mp4" in err and "\n" not in err


def test_faces_command_mask_and_face_size(tmp_path):
    video = clips.static_face_clip(tmp_path / "still.mp4", n_frames=2)
    assert main(["faces", str(video), "--output", str(tmp_path / "out"), "--mask", "--face-size", "96"]) == 0
    crop = cv2.imread(str(tmp_path / "out" / "still_aligned" / "frame_det_00_000001.bmp"))
    assert crop.shape == (96, 96, 3)
    assert (crop[:4, :4] == 0).all()

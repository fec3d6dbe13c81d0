"""The OpenFace stage, run against stand-in executables that write OpenFace's output layout (spec 2.1-2.4)."""
import json
import os
import stat
import sys

import numpy as np
import pytest

from mimamo_ops.errors import FaceStageError, VideoError
from mimamo_ops.faces.openface_stage import OpenFaceExtractor
from mimamo_ops.faces.records import FaceConfig
from mimamo_ops.faces.stages import make_face_extractor
from tests import clips

# The stand-in records its argv, then writes <stem>.csv (header joined by ", ") and the aligned BMPs for the
# rows given in ROWS: (frame 1-based, slot, success, x offset of the landmark grid, BGR colour of the image).
_STANDIN = r'''#!{python}
import json, os, sys
from pathlib import Path
import cv2
import numpy as np
ROWS = json.loads({rows!r})
EXIT_CODE = {exit_code}
args = sys.argv[1:]
Path({log!r}).write_text(json.dumps(sys.argv))
if EXIT_CODE:
    sys.stderr.write("loading models\nerror: could not find the landmark model\n")
    sys.exit(EXIT_CODE)
video = Path(args[args.index("-f") + 1])
out_dir = Path(args[args.index("-out_dir") + 1])
size = int(args[args.index("-simsize") + 1])
stem = video.name.rsplit(".", 1)[0]
aligned = out_dir / (stem + "_aligned")
aligned.mkdir(parents=True, exist_ok=True)
header = ["frame", "face_id", "timestamp", "confidence", "success"]
header += ["gaze_0_x", "pose_Tx"] + ["x_%d" % i for i in range(68)] + ["y_%d" % i for i in range(68)]
header += ["p_scale", "AU01_r"]
lines = [", ".join(header)]
for frame, slot, success, x_offset, colour in ROWS:
    xs = [x_offset + (i % 10) * 5.0 for i in range(68)]
    ys = [100.0 + (i // 10) * 6.0 for i in range(68)]
    values = [frame, slot, (frame - 1) / 30.0, 0.9 if success else 0.1, success, 0.01, 12.5] + xs + ys + [1.0, 0.3]
    lines.append(", ".join(str(v) for v in values))
    if success:
        image = np.full((size, size, 3), colour, np.uint8)
        cv2.imwrite(str(aligned / ("frame_det_%02d_%06d.bmp" % (slot, frame))), image)
(out_dir / (stem + ".csv")).write_text("\n".join(lines) + "\n")
'''


def _make_standin(directory, name, rows, log, exit_code=0):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(_STANDIN.format(python=sys.executable, rows=json.dumps(rows), log=str(log), exit_code=exit_code))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return clips.static_face_clip(tmp_path_factory.mktemp("of_video") / "my clip.v2.mp4", n_frames=5)


SINGLE_ROWS = [[1, 0, 1, 50, [255, 0, 0]], [2, 0, 1, 52, [0, 255, 0]], [3, 0, 0, 0, [0, 0, 0]],
               [4, 0, 1, 54, [0, 0, 255]], [5, 0, 1, 56, [10, 20, 30]]]


def test_single_face_command_line_is_the_spec_argument_list(tmp_path, video):
    log = tmp_path / "argv.json"
    _make_standin(tmp_path / "bin", "FeatureExtraction", SINGLE_ROWS, log)
    extractor = make_face_extractor(FaceConfig(openface_path=str(tmp_path / "bin")))
    assert isinstance(extractor, OpenFaceExtractor)
    list(extractor.extract(str(video)))
    argv = json.loads(log.read_text())
    assert argv[0] == str(tmp_path / "bin" / "FeatureExtraction")
    assert argv[1:3] == ["-f", str(video.absolute())]
    assert argv[3] == "-out_dir" and os.path.isabs(argv[4])
    assert argv[5:] == ["-simsize", "112", "-2Dfp", "-3Dfp", "-pdmparams", "-pose", "-aus", "-gaze", "-simalign",
                        "-nobadaligned", "-nomask", "-q"]


def test_mask_drops_nomask_and_face_size_sets_simsize(tmp_path, video):
    log = tmp_path / "argv.json"
    binary = _make_standin(tmp_path / "bin", "FeatureExtraction", SINGLE_ROWS, log)
    frames = list(OpenFaceExtractor(FaceConfig(openface_path=str(binary), mask=True, face_size=64)).extract(str(video)))
    argv = json.loads(log.read_text())
    assert "-nomask" not in argv and argv[argv.index("-simsize") + 1] == "64"
    assert frames[0].faces[0].aligned.shape == (64, 64, 3)


def test_single_face_records_come_back_per_frame(tmp_path, video):
    _make_standin(tmp_path / "bin", "FeatureExtraction", SINGLE_ROWS, tmp_path / "argv.json")
    frames = list(OpenFaceExtractor(FaceConfig(openface_path=str(tmp_path / "bin"))).extract(str(video)))
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert [len(f.faces) for f in frames] == [1, 1, 0, 1, 1]
    np.testing.assert_allclose([f.timestamp_s for f in frames], np.arange(5) / 30.0, atol=1e-9)
    face = frames[3].faces[0]
    assert face.frame_index == 3 and face.face_id == 0
    assert face.confidence == pytest.approx(0.9)
    assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float32
    assert face.landmarks[11].tolist() == [54.0 + 5.0, 106.0]
    assert face.box == (54.0, 100.0, 54.0 + 45.0, 100.0 + 36.0)
    # The BMP is stored BGR; the record is RGB.
    assert face.aligned.dtype == np.uint8 and face.aligned.shape == (112, 112, 3)
    assert face.aligned[0, 0].tolist() == [255, 0, 0]
    assert frames[0].faces[0].aligned[5, 5].tolist() == [0, 0, 255]


def test_multi_face_uses_the_multi_binary_and_relabels_slots_by_overlap(tmp_path, video):
    rows = [[1, 0, 1, 50, [1, 1, 1]], [1, 1, 1, 400, [2, 2, 2]],
            [2, 0, 1, 402, [2, 2, 2]], [2, 1, 1, 52, [1, 1, 1]],  # OpenFace swapped the slots
            [3, 1, 1, 404, [2, 2, 2]]]
    log = tmp_path / "argv.json"
    _make_standin(tmp_path / "bin", "FaceLandmarkVidMulti", rows, log)
    frames = list(OpenFaceExtractor(FaceConfig(openface_path=str(tmp_path / "bin"), multi_face=True))
                  .extract(str(video)))
    assert json.loads(log.read_text())[0].endswith("FaceLandmarkVidMulti")
    assert len(frames) == 5  # frames 4 and 5 have no rows; the video's frame count still gives them
    ids_left = {face.face_id for f in frames for face in f.faces if face.box[0] < 200}
    ids_right = {face.face_id for f in frames for face in f.faces if face.box[0] > 200}
    assert ids_left == {0} and ids_right == {1}
    assert [len(f.faces) for f in frames] == [2, 2, 1, 0, 0]


def test_failing_binary_raises_with_video_exit_code_and_stderr(tmp_path, video):
    _make_standin(tmp_path / "bin", "FeatureExtraction", [], tmp_path / "argv.json", exit_code=3)
    extractor = OpenFaceExtractor(FaceConfig(openface_path=str(tmp_path / "bin")))
    with pytest.raises(FaceStageError, match=r"my clip\.v2\.mp4.*exited with code 3.*could not find the landmark"):
        list(extractor.extract(str(video)))


def test_missing_or_non_executable_binary_raises_at_construction(tmp_path):
    with pytest.raises(FaceStageError, match="FeatureExtraction: OpenFace executable not found"):
        OpenFaceExtractor(FaceConfig(openface_path=str(tmp_path)))
    plain = tmp_path / "FeatureExtraction"
    plain.write_text("#!/bin/sh\n")
    with pytest.raises(FaceStageError, match="not executable"):
        OpenFaceExtractor(FaceConfig(openface_path=str(tmp_path)))


def test_bad_video_is_rejected_before_openface_runs(tmp_path):
    log = tmp_path / "argv.json"
    _make_standin(tmp_path / "bin", "FeatureExtraction", SINGLE_ROWS, log)
    bad = clips.not_a_video(tmp_path / "notes.mp4")
    with pytest.raises(VideoError, match="notes.mp4"):
        list(OpenFaceExtractor(FaceConfig(openface_path=str(tmp_path / "bin"))).extract(str(bad)))
    assert not log.exists()

"""The supervised face stage (``mimamo_ops.faces.isolated_stage``) against real faults in its child process: a
native crash (SIGSEGV), a native hang, memory growth and Python errors, with ``tests/ops/isolation_fakes.py``'s
fake face stage (real probe of real clips, fake faces) so that each case takes seconds.

One stage serves the module's tests in turn, as one serves a pipeline worker's videos; the fault tests check that
the next video is served by a fresh process.
"""
import logging
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from mimamo_ops.decoding import video as video_module
from mimamo_ops.decoding.video import DecodeReport, probe_video
from mimamo_ops.errors import FaceStageError, VideoError
from mimamo_ops.faces.isolated_stage import InProcessFaceStage, IsolatedFaceStage, IsolationConfig
from mimamo_ops.faces.mtcnn_model import MtcnnDetector
from mimamo_ops.faces.records import FaceConfig
from tests import clips
from tests.ops.isolation_fakes import FAULT_FRAME, FRAMES, PRODUCED_ENV, CrashingFaces, FaultyFaces, expected_frames

STALL_S = 2.0
BUDGET_MB = 200
DEPTH = 4


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """A real 320x240 clip as good.mp4 and under the names that pick the fake stage's faults."""
    folder = tmp_path_factory.mktemp("isolation")
    clips.no_face_clip(folder / "good.mp4", n_frames=2)
    for name in ("crash", "hang", "grow", "fail", "slow"):
        shutil.copy(folder / "good.mp4", folder / f"{name}.mp4")
    return folder


@pytest.fixture(scope="module")
def stage(videos):
    produced = videos / "produced.txt"
    previous = os.environ.get(PRODUCED_ENV)
    os.environ[PRODUCED_ENV] = str(produced)  # read by the child, which inherits the environment
    isolated = IsolatedFaceStage(FaceConfig(), 1, IsolationConfig(stall_timeout_s=STALL_S,
                                                                  video_memory_budget_mb=BUDGET_MB,
                                                                  depth_frames=DEPTH), FaultyFaces)
    try:
        with isolated:
            isolated.wait_ready()
            yield isolated
    finally:
        if previous is None:
            os.environ.pop(PRODUCED_ENV, None)
        else:
            os.environ[PRODUCED_ENV] = previous


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_frames_equal(frames, expected) -> None:
    assert [(f.index, f.timestamp_s, len(f.faces)) for f in frames] == [
        (f.index, f.timestamp_s, len(f.faces)) for f in expected]
    for got, want in zip(frames, expected):
        for face, reference in zip(got.faces, want.faces):
            assert (face.frame_index, face.face_id, face.track_id, face.confidence, face.box) == (
                reference.frame_index, reference.face_id, reference.track_id, reference.confidence, reference.box)
            assert face.aligned.dtype == np.uint8 and face.aligned.shape == (112, 112, 3)
            np.testing.assert_array_equal(face.aligned, reference.aligned)
            np.testing.assert_array_equal(face.landmarks, reference.landmarks)


def assert_serves_a_good_video(stage, videos) -> None:
    video = stage.open_video(str(videos / "good.mp4"))
    assert_frames_equal(list(video.frames), expected_frames())
    assert video.report == DecodeReport(FRAMES, 0, None)


def test_a_good_video_streams_its_probe_frames_and_report(stage, videos):
    path = str(videos / "good.mp4")
    pid = stage.pid

    video = stage.open_video(path)
    frames = list(video.frames)

    assert video.info == probe_video(path)
    assert_frames_equal(frames, expected_frames())
    assert video.report == DecodeReport(FRAMES, 0, None)
    assert stage.pid == pid and pid != os.getpid()


def test_the_in_process_stage_serves_the_same(videos):
    path = str(videos / "good.mp4")
    with InProcessFaceStage(FaceConfig(), IsolationConfig(enabled=False, depth_frames=DEPTH), FaultyFaces) as stage:
        video = stage.open_video(path)
        frames = list(video.frames)
    assert video.info == probe_video(path)
    assert_frames_equal(frames, expected_frames())
    assert video.report == DecodeReport(FRAMES, 0, None)


def test_a_native_crash_fails_that_video_and_a_fresh_process_serves_the_next(stage, videos):
    crashed_pid = stage.pid
    path = videos / "crash.mp4"
    video = stage.open_video(str(path))
    taken = []
    with pytest.raises(FaceStageError) as raised:
        for frame in video.frames:
            taken.append(frame.index)
    assert str(raised.value) == f"{path}: face stage crashed: SIGSEGV (after frame {FAULT_FRAME - 1})"
    assert taken == list(range(FAULT_FRAME))
    assert not is_alive(crashed_pid)
    assert_serves_a_good_video(stage, videos)
    assert stage.pid != crashed_pid


def test_a_hang_is_stopped_after_the_stall_timeout(stage, videos):
    stage.wait_ready()  # a process restarted by an earlier test has loaded
    hung_pid = stage.pid
    path = videos / "hang.mp4"
    video = stage.open_video(str(path))
    started = time.monotonic()
    with pytest.raises(FaceStageError) as raised:
        list(video.frames)
    waited_s = time.monotonic() - started
    assert str(raised.value) == (f"{path}: no new frame for {STALL_S:g} s (after frame {FAULT_FRAME - 1}); the face "
                                 "stage process was stopped")
    assert STALL_S <= waited_s < STALL_S + 3.0, waited_s
    assert not is_alive(hung_pid)
    assert_serves_a_good_video(stage, videos)


def test_memory_growth_over_the_budget_fails_that_video(stage, videos):
    stage.wait_ready()
    grown_pid = stage.pid
    path = videos / "grow.mp4"
    with pytest.raises(FaceStageError) as raised:
        list(stage.open_video(str(path)).frames)
    message = str(raised.value)
    assert message.startswith(f"{path}: face stage over its memory budget of {BUDGET_MB} MB: "), message
    grown_mb = int(re.search(r": (\d+) MB more than when the video began", message).group(1))
    assert BUDGET_MB < grown_mb < BUDGET_MB + 8 * 64, message  # caught within a few 64 MB allocations
    assert not is_alive(grown_pid)
    assert_serves_a_good_video(stage, videos)


def test_python_errors_come_back_with_their_type_message_and_stage(stage, videos, caplog):
    stage.wait_ready()
    pid = stage.pid
    missing = videos / "missing.mp4"
    with pytest.raises(VideoError, match=re.escape(f"{missing}: no such file")):
        stage.open_video(str(missing))  # the probe's error, from open_video
    path = videos / "fail.mp4"
    video = stage.open_video(str(path))
    taken = []
    with caplog.at_level(logging.WARNING, logger="tests"):
        with pytest.raises(VideoError) as raised:
            for frame in video.frames:  # the face stage's error, from the frames
                taken.append(frame.index)
    assert str(raised.value) == f"{path}: damaged at frame {FAULT_FRAME}"
    assert any("raised in the face stage process" in note for note in raised.value.__notes__)
    assert taken == list(range(FAULT_FRAME))
    (record,) = [r for r in caplog.records if r.name == "tests.ops.isolation_fakes"]
    assert record.getMessage() == f"{path}: about to fail" and record.process == pid
    assert stage.pid == pid
    assert_serves_a_good_video(stage, videos)
    assert stage.pid == pid


def test_the_child_runs_at_most_the_depth_ahead_and_an_early_close_stops_it(stage, videos):
    stage.wait_ready()
    pid = stage.pid
    produced = Path(os.environ[PRODUCED_ENV])
    produced.unlink(missing_ok=True)
    frames = stage.open_video(str(videos / "slow.mp4")).frames
    assert next(frames).index == 0

    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and len(produced.read_text().split()) < DEPTH + 1:
        time.sleep(0.05)
    time.sleep(0.5)
    # DEPTH frames sent without credit, one more made and waiting for credit; the one taken gave none yet
    assert produced.read_text().split() == [str(index) for index in range(DEPTH + 1)]

    frames.close()
    assert stage.pid == pid
    assert_serves_a_good_video(stage, videos)
    assert stage.pid == pid and len(produced.read_text().split()) < FRAMES


def test_a_crash_while_loading_the_models_is_reported(videos):
    with IsolatedFaceStage(FaceConfig(), 1, IsolationConfig(), CrashingFaces) as stage:
        with pytest.raises(FaceStageError, match="the face stage process died while loading its models: SIGSEGV"):
            stage.wait_ready()
        assert stage.pid is None


def test_frames_over_the_pixel_limit_fail_before_any_frame_is_decoded(videos, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("a frame was decoded")

    monkeypatch.setattr(video_module, "_RankedDecode", no_decoding)
    path = videos / "good.mp4"
    with InProcessFaceStage(FaceConfig(), IsolationConfig(enabled=False, max_frame_pixels=320 * 240 - 1),
                            FaultyFaces) as stage:
        with pytest.raises(VideoError) as raised:
            stage.open_video(str(path))
    assert str(raised.value) == f"{path}: frame 320x240 over the limit of 76799 pixels (76800 pixels)"


def test_isolation_settings_out_of_range_raise():
    for kwargs in ({"max_frame_pixels": 0}, {"video_memory_budget_mb": 0}, {"stall_timeout_s": 0.0},
                   {"depth_frames": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            IsolationConfig(**kwargs)


def test_the_child_takes_the_thread_budget_and_its_log_records_reach_the_parent(videos, caplog):
    with caplog.at_level(logging.INFO, logger="mimamo_ops"):
        with IsolatedFaceStage(FaceConfig(), 2, IsolationConfig(), FaultyFaces) as stage:
            stage.wait_ready()
            pid = stage.pid
    budget = [r for r in caplog.records if r.name == "mimamo_ops.runtime.threads"]
    assert [(r.getMessage(), r.process) for r in budget] == [
        (f"thread budget: 2 thread(s) per library in process {pid}", pid)]


def test_the_child_runs_this_package_even_from_a_folder_holding_another_mimamo_ops(videos, tmp_path, monkeypatch):
    """``python -c`` puts the working directory first on the path; a run started in another checkout's folder
    must not start that checkout's face stage."""
    impostor = tmp_path / "mimamo_ops"
    impostor.mkdir()
    (impostor / "__init__.py").write_text("raise ImportError('the mimamo_ops of the working directory')\n")
    monkeypatch.chdir(tmp_path)
    with IsolatedFaceStage(FaceConfig(), 1, IsolationConfig(depth_frames=DEPTH), FaultyFaces) as stage:
        assert_serves_a_good_video(stage, videos)


def test_the_real_face_stage_finds_faces_without_importing_torch_once_its_networks_are_converted(tmp_path):
    """On OpenVINO the face stage's process needs torch only to convert the MTCNN networks; with them in the
    compiled cache (converted here first, as a pipeline's first worker does) it starts without torch's 2 s of
    imports. Checked on the child's memory map: libtorch is never loaded into it."""
    MtcnnDetector(runtime="openvino")  # converts the networks into the session's cache if they are not there
    clips.moving_face_clip(tmp_path / "face.mp4", n_frames=6)
    with IsolatedFaceStage(FaceConfig(runtime="openvino"), 1, IsolationConfig()) as stage:
        video = stage.open_video(str(tmp_path / "face.mp4"))
        frames = list(video.frames)
        libraries = Path(f"/proc/{stage.pid}/maps").read_text()
    assert [frame.index for frame in frames] == list(range(6))
    assert all(len(frame.faces) == 1 for frame in frames)
    assert "libtorch" not in libraries and "libc10" not in libraries

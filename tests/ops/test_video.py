"""Decoding real encoded clips: counts, indices, timestamps, rotation, seeking, containers, damaged and bad files."""
import gc
import io
import logging
import re
import weakref

import numpy as np
import pytest

from mimamo_ops.decoding.video import (DecodeReport, VideoFrame, VideoInfo, iter_frames, iter_frames_in_span,
                                       probe_video)
from mimamo_ops.errors import VideoError
from tests import clips

N_MOVING = 60


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, in dB."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("video_clips")


@pytest.fixture(scope="session")
def face_frames():
    """``clips.moving_face_frames(n)``, computed once per n (the motion depends on n)."""
    cache = {}

    def frames(n):
        if n not in cache:
            cache[n] = clips.moving_face_frames(n)
        return cache[n]

    return frames


@pytest.fixture(scope="session")
def moving_frames(face_frames):
    return face_frames(N_MOVING)


@pytest.fixture(scope="session")
def moving_mp4(clip_dir, moving_frames):
    return clips.write_clip(clip_dir / "moving.mp4", moving_frames)


@pytest.fixture(scope="session")
def vfr_mp4(clip_dir, face_frames):
    # A keyframe every 10 frames, so that seeks land on different keyframes.
    return clips.write_clip(clip_dir / "vfr.mp4", face_frames(30), pts_s=clips.vfr_timestamps(30), gop=10)


@pytest.fixture(scope="session")
def vfr_mkv(clip_dir, face_frames):
    return clips.write_clip(clip_dir / "vfr.mkv", face_frames(30), pts_s=clips.vfr_timestamps(30), gop=10)


@pytest.fixture(scope="session")
def mpeg4_avi(clip_dir, face_frames):
    return clips.write_clip(clip_dir / "gop10.avi", face_frames(30), gop=10)


@pytest.fixture(scope="session")
def truncated_mp4(clip_dir):
    """The first 40 % of the moving-face mp4 written with its index first (same frames as ``moving_frames``)."""
    return clips.truncated_clip(clip_dir / "cut.mp4", keep_fraction=0.4, faststart=True, n_frames=N_MOVING)


@pytest.fixture(scope="session")
def full_decodes():
    """Full decodes, cached per path so that the seek tests compare against one reference each."""
    cache = {}

    def decode(path):
        if path not in cache:
            cache[path] = list(iter_frames(path))
        return cache[path]

    return decode


def test_probe_reports_size_rate_count_duration_and_codec(moving_mp4):
    info = probe_video(moving_mp4)

    assert info == VideoInfo(path=str(moving_mp4), width=640, height=360, fps=30.0, frame_count=N_MOVING,
                             duration_s=pytest.approx(2.0, abs=1e-6), rotation_deg=0, codec="h264")


def test_full_decode_yields_every_frame_in_order_with_cfr_timestamps(moving_mp4, moving_frames):
    frames = list(iter_frames(moving_mp4))

    assert [f.index for f in frames] == list(range(N_MOVING))
    np.testing.assert_allclose([f.timestamp_s for f in frames], np.arange(N_MOVING) / 30.0, rtol=0, atol=1e-6)
    for frame, source in zip(frames, moving_frames):
        assert isinstance(frame, VideoFrame)
        assert frame.rgb.shape == (360, 640, 3) and frame.rgb.dtype == np.uint8
        # RGB (not BGR) and close to what was encoded (crf 18 H.264).
        assert psnr_db(frame.rgb, source) > 33.0
        assert psnr_db(frame.rgb, source[..., ::-1]) < 25.0


@pytest.mark.parametrize("clip_name, atol_s", [("vfr_mp4", 1e-4), ("vfr_mkv", 1e-3)])  # mkv stores 1 ms ticks
def test_vfr_timestamps_match_the_written_pts(clip_name, atol_s, request):
    frames = list(iter_frames(request.getfixturevalue(clip_name)))

    expected = clips.vfr_timestamps(30)
    assert [f.index for f in frames] == list(range(30))
    np.testing.assert_allclose([f.timestamp_s for f in frames], expected, rtol=0, atol=atol_s)


@pytest.mark.parametrize("rotation_deg", [90, 180, 270])
def test_display_rotation_is_applied_so_the_face_is_upright(rotation_deg, clip_dir, face_frames):
    path = clips.rotated_clip(clip_dir / f"rotated_{rotation_deg}.mp4", n_frames=20, rotation_deg=rotation_deg)

    info = probe_video(path)
    frames = list(iter_frames(path))

    assert info.rotation_deg == rotation_deg
    assert (info.width, info.height) == (640, 360)
    assert len(frames) == 20
    for frame, upright in zip(frames, face_frames(20)):
        assert frame.rgb.shape == (360, 640, 3)
        assert psnr_db(frame.rgb, upright) > 33.0
        # Half a turn off would still have the right shape; it must not match.
        assert psnr_db(frame.rgb, np.rot90(upright, 2)) < 20.0


@pytest.mark.parametrize("clip_name, start_frame", [
    *[("moving_mp4", s) for s in (1, 13, 29, 30, 31, 57)],
    *[(name, s) for name in ("vfr_mp4", "vfr_mkv", "mpeg4_avi") for s in (1, 9, 10, 11, 27)],
])
def test_seek_to_a_frame_yields_the_same_frames_as_a_full_decode(clip_name, start_frame, request, full_decodes):
    path = request.getfixturevalue(clip_name)
    full = full_decodes(path)

    sought = list(iter_frames(path, start_frame=start_frame, end_frame=start_frame + 4))

    expected = full[start_frame:start_frame + 4]
    assert len(sought) == len(expected) > 0
    for got, want in zip(sought, expected):
        assert (got.index, got.timestamp_s) == (want.index, want.timestamp_s)
        np.testing.assert_array_equal(got.rgb, want.rgb)


@pytest.mark.parametrize("start_time_s", [0.0, 0.5, 0.55, 1.0])
def test_seek_to_a_time_starts_at_the_first_frame_at_or_after_it(start_time_s, vfr_mp4, full_decodes):
    full = full_decodes(vfr_mp4)

    sought = list(iter_frames(vfr_mp4, start_time_s=start_time_s))

    first = next(i for i, f in enumerate(full) if f.timestamp_s >= start_time_s - 1e-9)
    assert [(f.index, f.timestamp_s) for f in sought] == [(f.index, f.timestamp_s) for f in full[first:]]
    np.testing.assert_array_equal(sought[0].rgb, full[first].rgb)


@pytest.mark.parametrize("clip_name, first, last", [
    *[("moving_mp4", first, last) for first, last in ((0, 3), (13, 29), (30, 31), (57, N_MOVING - 1))],
    *[(name, first, last) for name in ("vfr_mp4", "vfr_mkv", "mpeg4_avi") for first, last in ((9, 11), (11, 27))],
])
def test_a_span_after_one_seek_yields_the_full_decode_s_frames_between_two_timestamps(clip_name, first, last, request,
                                                                                      full_decodes):
    path = request.getfixturevalue(clip_name)
    full = full_decodes(path)

    span = list(iter_frames_in_span(path, full[first].timestamp_s, full[last].timestamp_s))

    assert [frame.timestamp_s for frame in span] == [frame.timestamp_s for frame in full[first:last + 1]]
    assert {frame.index for frame in span} == {-1}
    for got, want in zip(span, full[first:last + 1]):
        np.testing.assert_array_equal(got.rgb, want.rgb)


def test_end_frame_is_exclusive_and_a_start_past_the_end_yields_nothing(moving_mp4):
    assert [f.index for f in iter_frames(moving_mp4, end_frame=3)] == [0, 1, 2]
    assert [f.index for f in iter_frames(moving_mp4, start_frame=58)] == [58, 59]
    assert list(iter_frames(moving_mp4, start_frame=N_MOVING + 5)) == []
    assert list(iter_frames(moving_mp4, start_time_s=10.0)) == []


@pytest.mark.parametrize("kwargs", [dict(start_frame=-1), dict(start_frame=5, end_frame=4),
                                    dict(start_frame=2, start_time_s=1.0), dict(start_time_s=-0.5)])
def test_bad_arguments_raise_value_error(kwargs, moving_mp4):
    with pytest.raises(ValueError):
        list(iter_frames(moving_mp4, **kwargs))


@pytest.mark.parametrize("suffix, encoder, pix_fmt, codec", [
    (".avi", None, "yuv420p", "mpeg4"),
    (".mkv", None, "yuv420p", "h264"),
    (".mp4", "libx265", "yuv420p", "hevc"),
    (".mov", "libx265", "yuv420p10le", "hevc"),  # 10-bit HEVC, as phones record
    (".webm", "libvpx-vp9", "yuv420p", "vp9"),
    (".mkv", "libsvtav1", "yuv420p10le", "av1"),
])
def test_other_containers_and_codecs_decode_to_the_same_content(suffix, encoder, pix_fmt, codec, clip_dir,
                                                                 face_frames):
    path = clips.other_container_clip(clip_dir / f"other_content_{codec}_{pix_fmt}{suffix}", codec=encoder,
                                      pix_fmt=pix_fmt)

    info = probe_video(path)
    frames = list(iter_frames(path))

    assert info.codec == codec
    assert (info.width, info.height, info.fps) == (640, 360, 30.0)
    assert [f.index for f in frames] == list(range(30))
    np.testing.assert_allclose([f.timestamp_s for f in frames], np.arange(30) / 30.0, rtol=0, atol=1e-3)
    for frame, source in zip(frames, face_frames(30)):
        assert psnr_db(frame.rgb, source) > 30.0


@pytest.mark.parametrize("maker, name, cause", [
    (clips.corrupt_file, "corrupt.mp4", "cannot open: Invalid data found when processing input"),
    (lambda p: clips.truncated_clip(p, faststart=False), "cut_index.mp4", "cannot open: Invalid data found"),
    (clips.empty_file, "empty.mp4", "empty file (0 bytes)"),
    (clips.not_a_video, "notes.mp4", "cannot open: Invalid data found when processing input"),
    (clips.audio_only_file, "speech.mp4", "not a video (no video stream; streams: audio)"),
    (None, "missing.mp4", "no such file"),
])
def test_bad_file_raises_one_video_error_naming_the_file(maker, name, cause, tmp_path):
    path = tmp_path / name
    if maker is not None:
        maker(path)

    for call in (lambda: probe_video(path), lambda: list(iter_frames(path))):
        with pytest.raises(VideoError) as raised:
            call()
        message = str(raised.value)
        assert message.startswith(f"{path}: ")
        assert cause in message


@pytest.mark.parametrize("thread_count", [0, 1])
def test_truncated_mp4_yields_the_decodable_frames_then_raises(thread_count, truncated_mp4, clip_dir,
                                                               moving_frames, full_decodes):
    intact = full_decodes(clips.write_clip(clip_dir / "intact_faststart.mp4", moving_frames, faststart=True))
    path = truncated_mp4

    got = []
    with pytest.raises(VideoError) as raised:
        for frame in iter_frames(path, thread_count=thread_count):
            got.append(frame)

    message = str(raised.value)
    # 60 % of the bytes are gone: the missing frames count as undecodable, past the 50 % share
    assert message.startswith(f"{path}: damaged: {N_MOVING - len(got)} of {N_MOVING} frames do not decode")
    assert "missing at the end (truncated)" in message and "more than 50%" in message
    assert 5 < len(got) < 30
    # every frame before the cut in order; the last may come from the cut packet, after frames that do not decode
    indices = [f.index for f in got]
    assert indices[:-1] == list(range(len(got) - 1)) and indices[-1] >= len(got) - 1
    for frame, whole in zip(got[:-1], intact):  # the last one may come from a cut packet
        np.testing.assert_array_equal(frame.rgb, whole.rgb)


@pytest.fixture(scope="session")
def damaged_mp4(clip_dir):
    """The 150-frame moving-face mp4 (about 350 kB) with 50 kB of its middle overwritten, and its intact twin."""
    intact = clips.moving_face_clip(clip_dir / "undamaged150.mp4", n_frames=150)
    return clips.damaged_middle_clip(clip_dir / "damaged150.mp4", n_frames=150), intact


@pytest.mark.parametrize("thread_count", [0, 1])
def test_damaged_middle_keeps_every_decodable_frame_with_its_true_index_and_time(thread_count, damaged_mp4,
                                                                                 full_decodes):
    damaged, intact_path = damaged_mp4
    intact = full_decodes(intact_path)
    report = DecodeReport()

    got = list(iter_frames(damaged, thread_count=thread_count, report=report))

    indices = [f.index for f in got]
    assert indices == sorted(set(indices)) and 100 < len(got) < 150  # gaps where packets did not decode
    assert indices[0] == 0 and indices[-1] == 149  # the damage is in the middle only
    for frame in got:  # true frame numbers and times: those of the same frame in the intact clip
        whole = intact[frame.index]
        assert (frame.index, frame.timestamp_s) == (whole.index, whole.timestamp_s)
    first_gap = next(i for i, index in enumerate(indices) if index != i)
    assert 30 < first_gap < 120
    for frame in got[:first_gap - 1]:  # before the damage the pixels are the intact ones
        np.testing.assert_array_equal(frame.rgb, intact[frame.index].rgb)
    assert report == DecodeReport(frames_decoded=len(got), frames_undecodable=150 - len(got),
                                  warning=report.warning)
    assert report.warning.startswith(f"{150 - len(got)} of 150 frames do not decode and were skipped (")
    assert probe_video(damaged).frame_count == 150


def test_video_damaged_past_half_its_frames_raises_after_yielding_what_decodes(tmp_path):
    path = clips.damaged_middle_clip(tmp_path / "ruined.mp4", n_frames=60, damaged_bytes=100_000)
    report = DecodeReport()

    got = []
    with pytest.raises(VideoError, match=r"damaged: \d+ of 60 frames do not decode .* more than 50%") as raised:
        for frame in iter_frames(path, report=report):
            got.append(frame)

    assert str(raised.value).startswith(f"{path}: ")
    assert 0 < len(got) < 30 and report.frames_decoded == len(got)
    assert report.frames_undecodable == 60 - len(got) > 30


def test_intact_video_reports_no_damage(moving_mp4):
    report = DecodeReport()

    assert len(list(iter_frames(moving_mp4, report=report))) == N_MOVING
    assert report == DecodeReport(frames_decoded=N_MOVING, frames_undecodable=0, warning=None)


@pytest.mark.parametrize("suffix", [".mkv", ".avi"])
def test_truncated_matroska_or_avi_ends_early_with_a_warning(suffix, tmp_path, caplog, moving_frames):
    # Neither container can vouch for both its frame count and its duration once cut (see _check_complete).
    path = clips.write_clip(tmp_path / f"cut{suffix}", moving_frames)
    data = path.read_bytes()
    path.write_bytes(data[: int(0.4 * len(data))])

    with caplog.at_level(logging.WARNING, logger="mimamo_ops.decoding.video"):
        frames = list(iter_frames(path))

    assert 5 < len(frames) < 60
    assert any(str(path) in r.getMessage() and "truncated" in r.getMessage() for r in caplog.records)


def test_file_like_objects_decode_like_paths(moving_mp4, full_decodes):
    full = full_decodes(moving_mp4)
    with open(moving_mp4, "rb") as handle:
        assert probe_video(handle).path == str(moving_mp4)
    with open(moving_mp4, "rb") as handle:
        from_handle = list(iter_frames(handle))
    from_bytes = list(iter_frames(io.BytesIO(moving_mp4.read_bytes()), start_frame=30))

    assert len(from_handle) == N_MOVING
    for got, want in zip(from_handle, full):
        assert (got.index, got.timestamp_s) == (want.index, want.timestamp_s)
        np.testing.assert_array_equal(got.rgb, want.rgb)
    assert [f.index for f in from_bytes] == list(range(30, N_MOVING))
    np.testing.assert_array_equal(from_bytes[0].rgb, full[30].rgb)


@pytest.mark.parametrize("payload, cause", [(b"", "empty file (0 bytes)"), (b"\x00garbage" * 100, "cannot open")])
def test_bad_file_like_objects_raise_video_error(payload, cause):
    with pytest.raises(VideoError, match=re.escape(cause)) as raised:
        probe_video(io.BytesIO(payload))
    assert str(raised.value).startswith("<stream>: ")


def test_streaming_keeps_no_reference_to_frames_already_yielded(clip_dir):
    # PyAV's arrays live outside tracemalloc, so flat memory is checked by liveness: once the caller drops a
    # frame, nothing inside the iterator may keep its pixels alive.
    path = clips.no_face_clip(clip_dir / "long_noface.mp4", n_frames=90)
    alive = []

    n = 0
    for frame in iter_frames(path):
        alive.append(weakref.ref(frame.rgb))
        n += 1
    del frame
    gc.collect()

    assert n == 90
    assert sum(ref() is not None for ref in alive) == 0

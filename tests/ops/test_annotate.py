"""The annotated video: same frames, size and times as the input, each face's box in its colour, live gauges."""
import av
import numpy as np
import pytest

from mimamo_ops.decoding.video import iter_frames, probe_video
from mimamo_ops.outputs.annotate import FaceOverlay, NEGATIVE_RGB, POSITIVE_RGB, annotate_video, draw_face_overlay
from mimamo_ops.outputs.plots import face_color_rgb
from mimamo_ops.outputs.series import FaceSeries
from tests import clips

N_FRAMES = 24
WIDTH, HEIGHT = 640, 360


def face_boxes(face_id: int, frames: np.ndarray) -> np.ndarray:
    """Boxes around the heads of ``clips.two_faces_clip`` (face 0 top, moving right; face 1 bottom, moving left)."""
    s = frames / (N_FRAMES - 1)
    centre_x = 0.15 * WIDTH + 0.7 * WIDTH * s if face_id == 0 else 0.85 * WIDTH - 0.7 * WIDTH * s
    centre_y = np.full(len(frames), (0.27 if face_id == 0 else 0.73) * HEIGHT)
    return np.stack([centre_x - 40, centre_y - 60, centre_x + 40, centre_y + 10], 1).astype(np.float32)


def make_track(face_id: int, frames, valence: float, arousal: float) -> FaceSeries:
    frames = np.asarray(frames, dtype=np.int64)
    values = np.tile(np.float32([valence, arousal]), (len(frames), 1))
    return FaceSeries(face_id, frames, frames / 30.0, values, values, face_boxes(face_id, frames))


@pytest.fixture(scope="module")
def two_faces_video(tmp_path_factory):
    return clips.two_faces_clip(tmp_path_factory.mktemp("annotate") / "two.mp4", n_frames=N_FRAMES)


def decode(path):
    return {frame.index: frame.rgb for frame in iter_frames(path)}


def box_top_edge(rgb: np.ndarray, box) -> np.ndarray:
    """Pixels on the middle half of the box's top edge (the line is 3 px thick, centred on y0)."""
    x0, y0, x1, _ = (int(round(v)) for v in box)
    quarter = (x1 - x0) // 4
    return rgb[y0, x0 + quarter:x1 - quarter].astype(np.int32)


def test_output_keeps_frame_count_size_and_times(tmp_path, two_faces_video):
    tracks = [make_track(0, [*range(0, 10), *range(15, 20)], 0.6, -0.4), make_track(1, range(0, 20), -0.5, 0.3)]
    result = annotate_video(two_faces_video, tmp_path / "out.mp4", tracks, crf=12)
    info = probe_video(result.path)
    assert (info.width, info.height, info.frame_count) == (WIDTH, HEIGHT, N_FRAMES)
    assert (result.frames_written, result.frames_annotated) == (N_FRAMES, 20)
    times_in = [frame.timestamp_s for frame in iter_frames(two_faces_video)]
    times_out = [frame.timestamp_s for frame in iter_frames(result.path)]
    np.testing.assert_allclose(times_out, times_in, rtol=0, atol=1e-4)


def test_each_face_box_has_its_colour_and_faceless_frames_are_untouched(tmp_path, two_faces_video):
    tracks = [make_track(0, [*range(0, 10), *range(15, 20)], 0.6, -0.4), make_track(1, range(0, 20), -0.5, 0.3)]
    result = annotate_video(two_faces_video, tmp_path / "out.mp4", tracks, crf=12)
    source, annotated = decode(two_faces_video), decode(result.path)
    for track in tracks:
        colour = np.asarray(face_color_rgb(track.face_id))
        for row in (0, len(track.frame_indices) - 1):
            frame = int(track.frame_indices[row])
            edge = box_top_edge(annotated[frame], track.boxes_px[row])
            # yuv420p halves the chroma resolution, so allow some bleed from the background.
            assert np.abs(np.median(edge, axis=0) - colour).max() < 45, (track.face_id, frame)
            assert np.abs(box_top_edge(source[frame], track.boxes_px[row]).mean(0) - colour).max() > 60
    # Frame 12 is in face 0's gap: face 0's box is not drawn there.
    gap_edge = box_top_edge(annotated[12], face_boxes(0, np.array([12]))[0])
    np.testing.assert_allclose(gap_edge.mean(0), box_top_edge(source[12], face_boxes(0, np.array([12]))[0]).mean(0),
                               atol=8)
    # Frames 20.. have no face at all: only re-encoding noise.
    for frame in (20, 23):
        assert np.abs(annotated[frame].astype(np.int32) - source[frame]).mean() < 3.0


def test_variable_frame_rate_times_survive(tmp_path):
    source = clips.vfr_clip(tmp_path / "vfr.mp4", n_frames=12)
    frames = np.arange(12)
    track = FaceSeries(0, frames, clips.vfr_timestamps(12), np.zeros((12, 2), np.float32),
                       np.zeros((12, 2), np.float32), np.tile(np.float32([100, 100, 200, 200]), (12, 1)))
    result = annotate_video(source, tmp_path / "vfr_out.mp4", [track])
    times = [frame.timestamp_s for frame in iter_frames(result.path)]
    np.testing.assert_allclose(times, clips.vfr_timestamps(12), rtol=0, atol=1e-4)


def test_gauges_fill_from_the_centre_towards_the_value():
    rgb = np.full((360, 640, 3), 128, np.uint8)
    draw_face_overlay(rgb, FaceOverlay(face_id=1, box_px=(200, 60, 300, 180), valence=0.8, arousal=-0.6))
    box_colour = np.asarray(face_color_rgb(1), np.uint8)
    assert np.all(rgb[60, 220:280] == box_colour) and np.all(rgb[100:140, 200] == box_colour)
    positive = np.all(rgb == np.asarray(POSITIVE_RGB, np.uint8), axis=-1)
    negative = np.all(rgb == np.asarray(NEGATIVE_RGB, np.uint8), axis=-1)
    positive_rows, positive_cols = np.nonzero(positive)
    negative_rows, negative_cols = np.nonzero(negative)
    # The valence gauge (upper) is green right of its centre; the arousal gauge (lower) is red left of it.
    assert positive_rows.size > 100 and negative_rows.size > 100
    assert positive_rows.max() < negative_rows.min()
    assert positive_cols.min() >= negative_cols.max() - 1
    # Bar lengths follow the values: 0.8 vs 0.6 of the half-width.
    assert np.ptp(positive_cols) / np.ptp(negative_cols) == pytest.approx(0.8 / 0.6, rel=0.05)


def test_tracks_without_boxes_are_rejected(tmp_path, two_faces_video):
    track = FaceSeries(0, np.arange(3), np.zeros(3), np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="boxes_px"):
        annotate_video(two_faces_video, tmp_path / "out.mp4", [track])


def test_annotated_video_keeps_the_source_audio_track(tmp_path):
    silent = clips.two_faces_clip(tmp_path / "silent.mp4", n_frames=N_FRAMES)
    tone = clips.audio_only_file(tmp_path / "tone.m4a", duration_s=1.0)
    with_audio = tmp_path / "with_audio.mp4"
    with av.open(str(silent)) as video_in, av.open(str(tone)) as audio_in, av.open(str(with_audio), "w") as out:
        streams = {video_in.streams.video[0]: out.add_stream_from_template(video_in.streams.video[0]),
                   audio_in.streams.audio[0]: out.add_stream_from_template(audio_in.streams.audio[0])}
        for source in (video_in, audio_in):
            for packet in source.demux():
                if packet.dts is not None:
                    packet.stream = streams[packet.stream]
                    out.mux(packet)
    track = make_track(0, range(N_FRAMES), 0.5, -0.5)
    annotate_video(str(with_audio), tmp_path / "annotated.mp4", [track])

    def audio_packets(path):
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            packets = [bytes(packet) for packet in container.demux(stream) if packet.dts is not None]
            return stream.codec_context.name, stream.sample_rate, packets

    source_audio, annotated_audio = audio_packets(with_audio), audio_packets(tmp_path / "annotated.mp4")
    assert annotated_audio[:2] == ("aac", 16000)
    assert len(source_audio[2]) > 10 and annotated_audio[2] == source_audio[2]  # the very same AAC packets
    assert probe_video(str(tmp_path / "annotated.mp4")).frame_count == N_FRAMES


def test_annotated_video_of_a_silent_source_has_no_audio(tmp_path, two_faces_video):
    annotate_video(str(two_faces_video), tmp_path / "annotated.mp4", [make_track(0, range(N_FRAMES), 0.1, 0.1)])
    with av.open(str(tmp_path / "annotated.mp4")) as container:
        assert not container.streams.audio

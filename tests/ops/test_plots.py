"""Trend plots: size, one raw and one smoothed curve per face and quantity, breaks and shading at gaps."""
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from mimamo_ops.outputs.plots import FACE_COLORS, face_color_rgb, find_gaps_s, plot_va_trend
from mimamo_ops.outputs.series import FaceSeries
from mimamo_ops.outputs.smoothing import smooth_moving_average

FPS = 30.0


def make_track(face_id: int, frames, seed: int) -> FaceSeries:
    frames = np.asarray(frames, dtype=np.int64)
    rng = np.random.default_rng(seed)
    raw = np.clip(np.stack([0.6 * np.sin(frames / 20.0 + seed), 0.5 * np.cos(frames / 25.0 + seed)], 1)
                  + rng.normal(0.0, 0.1, (len(frames), 2)), -1, 1).astype(np.float32)
    return FaceSeries(face_id, frames, frames / FPS, raw, smooth_moving_average(raw, 9))


def count_pixels_of(image: np.ndarray, rgb) -> int:
    return int(np.all(image[..., :3] == np.asarray(rgb, dtype=np.uint8), axis=-1).sum())


def two_face_tracks():
    first = make_track(0, list(range(0, 100)) + list(range(130, 240)), seed=0)  # gap at frames 100..129
    second = make_track(1, range(40, 200), seed=1)  # absent at the start and the end
    return first, second


def test_png_has_the_requested_pixel_size(tmp_path):
    plot = plot_va_trend(two_face_tracks(), tmp_path / "a.png", size_in=(10.0, 4.0), dpi=80)
    with Image.open(plot.path) as image:
        assert image.size == (800, 320) == plot.size_px


def test_each_face_gets_a_raw_and_a_smoothed_curve_per_quantity(tmp_path):
    first, second = two_face_tracks()
    plot = plot_va_trend([first, second], tmp_path / "b.png", title="two.mp4", duration_s=8.0, frame_count=240)
    assert sorted(plot.lines) == sorted(
        (face, quantity, kind) for face in (0, 1) for quantity in ("valence", "arousal") for kind in ("raw", "smoothed"))
    for track in (first, second):
        for column, quantity in enumerate(("valence", "arousal")):
            for kind, values in (("raw", track.valence_arousal), ("smoothed", track.smoothed_valence_arousal)):
                x, y = plot.lines[(track.face_id, quantity, kind)]
                drawn = ~np.isnan(x)
                np.testing.assert_allclose(x[drawn], track.timestamps_s)
                np.testing.assert_allclose(y[drawn], values[:, column], rtol=0, atol=1e-7)
    # face 0's lines break once, at its gap; face 1's do not break
    assert np.isnan(plot.lines[(0, "valence", "raw")][0]).sum() == 1
    assert np.isnan(plot.lines[(1, "valence", "raw")][0]).sum() == 0


def test_each_face_curve_is_visible_in_its_colour(tmp_path):
    first, second = two_face_tracks()
    both = plot_va_trend([first, second], tmp_path / "both.png")
    only_second = plot_va_trend([second], tmp_path / "second.png")
    both_pixels = np.asarray(Image.open(both.path).convert("RGB"))
    second_pixels = np.asarray(Image.open(only_second.path).convert("RGB"))
    # The bold smoothed curves span the width of two panels: thousands of pixels, far more than a legend patch.
    assert count_pixels_of(both_pixels, face_color_rgb(0)) > 1500
    assert count_pixels_of(both_pixels, face_color_rgb(1)) > 1500
    assert count_pixels_of(second_pixels, face_color_rgb(1)) > 1500
    assert count_pixels_of(second_pixels, face_color_rgb(0)) < 50
    assert face_color_rgb(0) == tuple(int(FACE_COLORS[0][i:i + 2], 16) for i in (1, 3, 5))


def test_gaps_cover_missing_frames_at_start_middle_and_end():
    first, second = two_face_tracks()
    assert find_gaps_s(first, duration_s=9.0, frame_count=270) == [(99 / FPS, 130 / FPS), (239 / FPS, 9.0)]
    assert find_gaps_s(second) == [(0.0, 40 / FPS)]
    assert find_gaps_s(make_track(2, [], seed=2), duration_s=3.0) == [(0.0, 3.0)]


def test_plot_without_faces_still_writes_a_png(tmp_path):
    plot = plot_va_trend([], tmp_path / "none.png", duration_s=2.0)
    assert plot.lines == {} and plot.path.stat().st_size > 5_000


def test_plotting_leaves_no_open_figure(tmp_path):
    before = plt.get_fignums()
    for number in range(3):
        plot_va_trend(two_face_tracks(), tmp_path / f"{number}.png")
    assert plt.get_fignums() == before


def close(spans, expected) -> None:
    np.testing.assert_allclose(np.array(spans), np.array(expected), atol=1e-9)


def test_panels_shade_only_where_no_face_is_seen_and_lanes_show_each_face(tmp_path):
    first, second = two_face_tracks()  # face 0 absent at frames 100..129 while face 1 is seen
    plot = plot_va_trend([first, second], tmp_path / "lanes.png", duration_s=9.0, frame_count=270)
    close(plot.presence_s[0], [(0.0, 100 / FPS), (130 / FPS, 240 / FPS)])
    close(plot.presence_s[1], [(40 / FPS, 200 / FPS)])
    # Face 0's gap is covered by face 1: only the end, after every face, is shaded (grey, in no face's colour).
    close(plot.no_face_s, [(240 / FPS, 9.0)])
    alone = plot_va_trend([first], tmp_path / "alone.png", duration_s=9.0, frame_count=270)
    close(alone.no_face_s, [(100 / FPS, 130 / FPS), (240 / FPS, 9.0)])

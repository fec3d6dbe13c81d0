"""Tests for mimamo_ops.outputs.smoothing: the seed's moving average, keeping every frame."""
import numpy as np
import pytest

from mimamo_ops.outputs.smoothing import smooth_moving_average, smoothing_window_frames


@pytest.mark.parametrize(
    "seconds, fps, expected",
    [(0.5, 29.97, 15), (0.5, 25.0, 12), (None, 30.0, 1), (0.0, 30.0, 1), (0.01, 30.0, 1), (2.0, 24.0, 48)],
)
def test_window_is_seconds_times_rounded_fps(seconds, fps, expected):
    assert smoothing_window_frames(seconds, fps) == expected


def test_negative_smoothing_size_raises():
    with pytest.raises(ValueError, match="smoothing_size"):
        smoothing_window_frames(-1.0, 30.0)


def test_interior_rows_equal_the_seed_valid_average_relabelled_to_the_window_centre():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(50, 2)).astype(np.float32)
    window = 15
    seed_valid = np.stack(
        [np.convolve(values[:, c].astype(np.float64), np.ones(window) / window, mode="valid") for c in range(2)], 1
    )
    smoothed = smooth_moving_average(values, window)
    assert smoothed.shape == values.shape and smoothed.dtype == np.float32
    half = (window - 1) // 2
    np.testing.assert_allclose(smoothed[half : half + seed_valid.shape[0]], seed_valid, rtol=0, atol=1e-6)


def test_edges_average_only_the_rows_that_exist():
    values = np.arange(6, dtype=np.float32)[:, None]
    smoothed = smooth_moving_average(values, 4)
    # window rows i-1 .. i+2, cut at the track's ends
    expected = np.array([(0 + 1 + 2) / 3, 1.5, 2.5, 3.5, (3 + 4 + 5) / 3, 4.5], dtype=np.float32)[:, None]
    np.testing.assert_allclose(smoothed, expected, rtol=0, atol=1e-6)


def test_window_of_one_returns_an_unchanged_copy():
    values = np.array([[0.1, 0.2], [0.3, 0.4]], dtype=np.float32)
    smoothed = smooth_moving_average(values, 1)
    np.testing.assert_array_equal(smoothed, values)
    assert smoothed is not values


def test_window_longer_than_the_track_gives_the_track_mean_in_the_middle():
    values = np.array([[1.0], [2.0], [6.0]], dtype=np.float32)
    smoothed = smooth_moving_average(values, 9)
    np.testing.assert_allclose(smoothed, np.full((3, 1), 3.0, dtype=np.float32), atol=1e-6)

"""Moving-average smoothing of per-frame valence/arousal (spec section 11.2, step 5).

The seed averages each column over a box of ``w = int(smoothing_size_s * round(fps))`` rows in numpy's
'valid' mode: the series loses ``w - 1`` rows and each value is labelled with its window's *start*. Here every
row is kept and labelled with its own frame: row ``i`` gets the mean of rows ``i - (w - 1) // 2`` to
``i + w // 2``. Where that full window fits inside the track the value equals the seed's value for the window
starting at ``i - (w - 1) // 2``; near either end the window is cut at the track's edge and the mean is taken
over the rows that exist. Like the seed, the window counts rows of the track (frames with a face), so it spans
frames without a face as if they were adjacent.
"""
from typing import Optional

import numpy as np

__all__ = ["smoothing_window_frames", "smooth_moving_average"]


def smoothing_window_frames(smoothing_size_s: Optional[float], fps: float) -> int:
    """Returns the moving-average window in rows, ``int(smoothing_size_s * round(fps))`` (spec 11.2).

    Args:
        smoothing_size_s: window length in seconds; ``None`` or 0 means no smoothing.
        fps: the video's frame rate in frames per second.

    Returns:
        The window length in rows, at least 1 (1 means no smoothing; the seed raised an error for 0).

    Raises:
        ValueError: ``smoothing_size_s`` is negative or ``fps`` is not a positive finite number.
    """
    if smoothing_size_s is not None and smoothing_size_s < 0:
        raise ValueError(f"smoothing_size must be >= 0 seconds, got {smoothing_size_s}")
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive finite number, got {fps}")
    if not smoothing_size_s:
        return 1
    return max(1, int(smoothing_size_s * round(fps)))


def smooth_moving_average(values: np.ndarray, window_rows: int) -> np.ndarray:
    """Centred moving average that keeps every row (see the module docstring for the edge rule).

    Args:
        values: float (N, C) per-row values, e.g. ``va: float32 (N, 2), columns (valence, arousal)``.
        window_rows: box width in rows (>= 1); 1 returns a copy of ``values``.

    Returns:
        The smoothed values, same shape and dtype as ``values``. The sums run in float64.

    Raises:
        ValueError: ``values`` is not 2-D or ``window_rows`` < 1.
    """
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D (N, C), got shape {values.shape}")
    if window_rows < 1:
        raise ValueError(f"window_rows must be >= 1, got {window_rows}")
    count = values.shape[0]
    if window_rows == 1 or count == 0:
        return values.copy()
    cumulative = np.zeros((count + 1, values.shape[1]), dtype=np.float64)
    np.cumsum(values, axis=0, dtype=np.float64, out=cumulative[1:])
    rows = np.arange(count)
    first = np.clip(rows - (window_rows - 1) // 2, 0, count)
    stop = np.clip(rows + window_rows // 2 + 1, 0, count)
    sums = cumulative[stop] - cumulative[first]
    return (sums / (stop - first)[:, None]).astype(values.dtype)

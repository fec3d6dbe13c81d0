"""Valence/arousal trend plots: one PNG per video (the seed's ``<stem>_va_trend.png``, spec section 11.2, step 7).

The seed drew arousal and valence against ``s`` on one seaborn dark-grid axis, 20x5 in at 300 dpi, with a y-label
claiming "standardised" values, and never closed its figures (they leaked in watch mode). Here:

* two stacked panels share the time axis in seconds: valence on top, arousal below, both on [-1, 1];
* each face track has its own colour (:data:`FACE_COLORS`): the raw per-frame values as a thin line, the smoothed
  values as a bold line;
* stretches where a face was not found are shaded in the face's colour, and the lines break there instead of
  joining the frames on either side;
* the figure is a bare :class:`matplotlib.figure.Figure` drawn by the Agg canvas, never registered with pyplot, so
  nothing is kept after the call and no display is needed.
"""
import dataclasses
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mimamo_ops.seed_outputs import FaceSeries

__all__ = ["FACE_COLORS", "TrendPlot", "face_color_rgb", "find_gaps_s", "plot_va_trend"]

# Colour of face id k: FACE_COLORS[k % len(FACE_COLORS)] (matplotlib's tab10, as hex RGB). Shared with the
# annotated video so a face has the same colour in both.
FACE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
QUANTITIES = ("valence", "arousal")
RAW_LINE_WIDTH_PT = 0.8
SMOOTHED_LINE_WIDTH_PT = 2.4
GAP_ALPHA = 0.12

PathLike = Union[str, os.PathLike]


@dataclasses.dataclass(frozen=True)
class TrendPlot:
    """What :func:`plot_va_trend` drew.

    Attributes:
        path: the PNG written.
        size_px: (width, height) of the PNG in pixels.
        lines: ``(face_id, quantity, kind) -> (x, y)`` for every line drawn, ``quantity`` in ``("valence",
            "arousal")``, ``kind`` in ``("raw", "smoothed")``; x float64 (M,) seconds and y float64 (M,) values as
            plotted, with NaN where the line breaks at a gap.
        gaps_s: ``face_id -> [(start_s, end_s), ...]``, the shaded stretches without that face.
    """

    path: Path
    size_px: Tuple[int, int]
    lines: Dict[Tuple[int, str, str], Tuple[np.ndarray, np.ndarray]]
    gaps_s: Dict[int, List[Tuple[float, float]]]


def face_color_rgb(face_id: int) -> Tuple[int, int, int]:
    """Returns face ``face_id``'s colour as (red, green, blue), each 0..255."""
    hex_rgb = FACE_COLORS[face_id % len(FACE_COLORS)].lstrip("#")
    return tuple(int(hex_rgb[i:i + 2], 16) for i in (0, 2, 4))


def find_gaps_s(track: FaceSeries, duration_s: Optional[float] = None, frame_count: Optional[int] = None
                ) -> List[Tuple[float, float]]:
    """Returns the time spans where the track has no face.

    A gap is between two consecutive rows whose frame indices differ by more than 1 (it spans from the last frame
    with the face to the next one); before the first row when it is not frame 0; and after the last row, to
    ``duration_s``, when ``frame_count`` says later frames exist. A track with no rows is one gap over the
    whole ``duration_s`` (none when the duration is unknown).

    Args:
        track: one face track.
        duration_s: the video's duration in seconds, or None.
        frame_count: the video's number of frames, or None.

    Returns:
        [(start_s, end_s), ...] in increasing time, seconds.
    """
    frames = np.asarray(track.frame_indices, dtype=np.int64)
    times = np.asarray(track.timestamps_s, dtype=np.float64)
    if len(frames) == 0:
        return [(0.0, float(duration_s))] if duration_s else []
    gaps = []
    if frames[0] > 0:
        gaps.append((0.0, float(times[0])))
    for row in np.flatnonzero(np.diff(frames) > 1):
        gaps.append((float(times[row]), float(times[row + 1])))
    if duration_s is not None and frame_count is not None and frames[-1] < frame_count - 1 \
            and duration_s > times[-1]:
        gaps.append((float(times[-1]), float(duration_s)))
    return gaps


def _broken_line(track: FaceSeries, values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Returns (x, y) with a NaN point inserted at each gap, so the line is not drawn across it."""
    frames = np.asarray(track.frame_indices, dtype=np.int64)
    breaks = np.flatnonzero(np.diff(frames) > 1) + 1
    x = np.insert(np.asarray(track.timestamps_s, dtype=np.float64), breaks, np.nan)
    y = np.insert(np.asarray(values, dtype=np.float64), breaks, np.nan)
    return x, y


def plot_va_trend(series: Sequence[FaceSeries], path: PathLike, *, title: str = "",
                  duration_s: Optional[float] = None, frame_count: Optional[int] = None,
                  size_in: Tuple[float, float] = (12.0, 6.0), dpi: int = 100) -> TrendPlot:
    """Draws valence and arousal over time for each face of one video and writes a PNG (module docstring).

    Args:
        series: the video's face tracks; none draws empty panels marked "no face found".
        path: the PNG to write (its folder must exist).
        title: figure title, e.g. the video's file name.
        duration_s: the video's duration in seconds (sets the time axis and the final gap), or None.
        frame_count: the video's number of frames (tells whether a final gap exists), or None.
        size_in: figure (width, height) in inches.
        dpi: dots per inch; the PNG is ``round(size_in * dpi)`` pixels.

    Returns:
        A :class:`TrendPlot` describing the lines and gaps drawn.
    """
    path = Path(path)
    figure = Figure(figsize=size_in, dpi=dpi)
    canvas = FigureCanvasAgg(figure)
    axes = figure.subplots(2, 1, sharex=True)
    lines: Dict[Tuple[int, str, str], Tuple[np.ndarray, np.ndarray]] = {}
    gaps_s: Dict[int, List[Tuple[float, float]]] = {}
    legend_handles = []
    for track in series:
        color = FACE_COLORS[track.face_id % len(FACE_COLORS)]
        gaps_s[track.face_id] = find_gaps_s(track, duration_s, frame_count)
        for column, (quantity, axis) in enumerate(zip(QUANTITIES, axes)):
            for kind, values, width, alpha in (
                ("raw", track.valence_arousal, RAW_LINE_WIDTH_PT, 0.55),
                ("smoothed", track.smoothed_valence_arousal, SMOOTHED_LINE_WIDTH_PT, 1.0),
            ):
                x, y = _broken_line(track, np.asarray(values)[:, column])
                axis.plot(x, y, color=color, linewidth=width, alpha=alpha)
                lines[(track.face_id, quantity, kind)] = (x, y)
            for start_s, end_s in gaps_s[track.face_id]:
                axis.axvspan(start_s, end_s, color=color, alpha=GAP_ALPHA, linewidth=0)
        legend_handles.append(Patch(color=color, label=f"face {track.face_id} (thin: raw, bold: smoothed)"))
    if any(gaps_s.values()):
        legend_handles.append(Patch(color="0.5", alpha=GAP_ALPHA * 2, label="face not found (shaded)"))
    for quantity, axis in zip(QUANTITIES, axes):
        axis.set_ylim(-1.05, 1.05)
        axis.axhline(0.0, color="0.4", linewidth=0.6)
        axis.set_ylabel(quantity)
        axis.grid(True, color="0.88")
    if duration_s:
        axes[1].set_xlim(0.0, duration_s)
    axes[1].set_xlabel("time (s)")
    figure.subplots_adjust(top=0.86, bottom=0.09, left=0.07, right=0.98, hspace=0.12)
    if series:
        # Above the panels, so it never hides a curve.
        figure.legend(handles=legend_handles, loc="upper center", bbox_to_anchor=(0.5, 0.945),
                      ncol=min(len(legend_handles), 4), fontsize="small", frameon=False)
    else:
        for axis in axes:
            axis.text(0.5, 0.5, "no face found", transform=axis.transAxes, ha="center", va="center", color="0.3")
    figure.suptitle(title or "valence and arousal", y=0.985)
    canvas.print_png(str(path))
    width_px, height_px = canvas.get_width_height()
    return TrendPlot(path=path, size_px=(int(width_px), int(height_px)), lines=lines, gaps_s=gaps_s)

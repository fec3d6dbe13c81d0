"""Valence/arousal trend plots: one PNG per video (the seed's ``<stem>_va_trend.png``, spec section 11.2, step 7).

The seed drew arousal and valence against ``s`` on one seaborn dark-grid axis, 20x5 in at 300 dpi, with a y-label
claiming "standardised" values, and never closed its figures (they leaked in watch mode). Here:

* two stacked panels share the time axis in seconds: valence on top, arousal below, both on [-1, 1];
* each face track has its own colour (:data:`FACE_COLORS`): the raw per-frame values as a thin line, the smoothed
  values as a bold line;
* the lines break where a face was not found instead of joining the frames on either side; below the panels a
  lane per face shows in its colour when that face is seen, and the panels are shaded in one neutral grey only
  where no face at all is seen (a shade in a face's colour read as the other face being there);
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

from mimamo_ops.outputs.series import FaceSeries

__all__ = ["FACE_COLORS", "TrendPlot", "face_color_rgb", "find_gaps_s", "find_no_face_s", "find_presence_s",
           "plot_va_trend"]

# Colour of face id k: FACE_COLORS[k % len(FACE_COLORS)] (matplotlib's tab10, as hex RGB). Shared with the
# annotated video so a face has the same colour in both.
FACE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
QUANTITIES = ("valence", "arousal")
RAW_LINE_WIDTH_PT = 0.8
SMOOTHED_LINE_WIDTH_PT = 2.4
GAP_ALPHA = 0.12
NO_FACE_GREY = "0.55"
LANE_HEIGHT = 0.6  # of a lane's unit height

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
        gaps_s: ``face_id -> [(start_s, end_s), ...]``, the stretches without that face.
        presence_s: ``face_id -> [(start_s, end_s), ...]``, the bars of that face's lane (runs of consecutive
            frames with the face, each ending one frame after its last frame).
        no_face_s: ``[(start_s, end_s), ...]`` the stretches shaded grey in the panels: no face is seen.
    """

    path: Path
    size_px: Tuple[int, int]
    lines: Dict[Tuple[int, str, str], Tuple[np.ndarray, np.ndarray]]
    gaps_s: Dict[int, List[Tuple[float, float]]]
    presence_s: Dict[int, List[Tuple[float, float]]]
    no_face_s: List[Tuple[float, float]]


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


def find_presence_s(track: FaceSeries) -> List[Tuple[float, float]]:
    """Returns the runs of consecutive frames with the face as [(start_s, end_s), ...]; a run ends one frame
    (the track's median frame interval) after its last frame's time, so that one frame has a width."""
    frames = np.asarray(track.frame_indices, dtype=np.int64)
    times = np.asarray(track.timestamps_s, dtype=np.float64)
    if len(frames) == 0:
        return []
    steps = np.diff(times) / np.maximum(np.diff(frames), 1)
    frame_s = float(np.median(steps)) if len(steps) else 0.0
    breaks = np.flatnonzero(np.diff(frames) > 1)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(frames) - 1]])
    return [(float(times[a]), float(times[b]) + frame_s) for a, b in zip(starts, ends)]


def find_no_face_s(presence: Sequence[List[Tuple[float, float]]], end_s: float) -> List[Tuple[float, float]]:
    """Returns the stretches of [0, end_s] that no face's presence covers, [(start_s, end_s), ...]."""
    spans = sorted(span for runs in presence for span in runs)
    uncovered, cursor = [], 0.0
    for start, stop in spans:
        if start > cursor:
            uncovered.append((cursor, start))
        cursor = max(cursor, stop)
    if end_s > cursor:
        uncovered.append((cursor, float(end_s)))
    return uncovered


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
    lanes = max(len(series), 1)
    axes = figure.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [1.0, 1.0, 0.12 + 0.08 * lanes]})
    panels, lane_axis = axes[:2], axes[2]
    lines: Dict[Tuple[int, str, str], Tuple[np.ndarray, np.ndarray]] = {}
    gaps_s: Dict[int, List[Tuple[float, float]]] = {}
    presence_s: Dict[int, List[Tuple[float, float]]] = {}
    legend_handles = []
    for lane, track in enumerate(series):
        color = FACE_COLORS[track.face_id % len(FACE_COLORS)]
        gaps_s[track.face_id] = find_gaps_s(track, duration_s, frame_count)
        presence_s[track.face_id] = find_presence_s(track)
        for column, (quantity, axis) in enumerate(zip(QUANTITIES, panels)):
            for kind, values, width, alpha in (
                ("raw", track.valence_arousal, RAW_LINE_WIDTH_PT, 0.55),
                ("smoothed", track.smoothed_valence_arousal, SMOOTHED_LINE_WIDTH_PT, 1.0),
            ):
                x, y = _broken_line(track, np.asarray(values)[:, column])
                axis.plot(x, y, color=color, linewidth=width, alpha=alpha)
                lines[(track.face_id, quantity, kind)] = (x, y)
        lane_axis.broken_barh([(start, stop - start) for start, stop in presence_s[track.face_id]],
                              (lane - LANE_HEIGHT / 2, LANE_HEIGHT), facecolors=color)
        legend_handles.append(Patch(color=color, label=f"face {track.face_id} (thin: raw, bold: smoothed)"))
    last_s = max([stop for runs in presence_s.values() for _, stop in runs], default=0.0)
    no_face_s = find_no_face_s(list(presence_s.values()), duration_s if duration_s else last_s) if series else []
    for axis in panels:
        for start_s, end_s in no_face_s:
            axis.axvspan(start_s, end_s, color=NO_FACE_GREY, alpha=GAP_ALPHA * 2, linewidth=0)
    if no_face_s:
        legend_handles.append(Patch(color=NO_FACE_GREY, alpha=GAP_ALPHA * 2, label="no face found (grey)"))
    for quantity, axis in zip(QUANTITIES, panels):
        axis.set_ylim(-1.05, 1.05)
        axis.axhline(0.0, color="0.4", linewidth=0.6)
        axis.set_ylabel(quantity)
        axis.grid(True, color="0.88")
    lane_axis.set_ylim(-0.5, lanes - 0.5)
    lane_axis.invert_yaxis()
    lane_axis.set_yticks(range(len(series)))
    lane_axis.set_yticklabels([f"face {track.face_id}" for track in series], fontsize="x-small")
    lane_axis.tick_params(axis="y", length=0)
    lane_axis.set_ylabel("seen", fontsize="small")
    if duration_s:
        lane_axis.set_xlim(0.0, duration_s)
    lane_axis.set_xlabel("time (s)")
    figure.subplots_adjust(top=0.86, bottom=0.09, left=0.07, right=0.98, hspace=0.12)
    if series:
        # Above the panels, so it never hides a curve.
        figure.legend(handles=legend_handles, loc="upper center", bbox_to_anchor=(0.5, 0.945),
                      ncol=min(len(legend_handles), 4), fontsize="small", frameon=False)
    else:
        for axis in panels:
            axis.text(0.5, 0.5, "no face found", transform=axis.transAxes, ha="center", va="center", color="0.3")
    figure.suptitle(title or "valence and arousal", y=0.985)
    canvas.print_png(str(path))
    width_px, height_px = canvas.get_width_height()
    return TrendPlot(path=path, size_px=(int(width_px), int(height_px)), lines=lines, gaps_s=gaps_s,
                     presence_s=presence_s, no_face_s=no_face_s)

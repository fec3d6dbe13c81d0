"""The seed's per-video outputs: ``<stem>_va_preds.csv`` and ``<stem>_va_trend.png`` (spec section 11.2, step 7).

The seed wrote, for each video, a CSV with columns exactly ``valence,arousal,s`` (no index column) and a trend
plot, into its results directory; directory and watch mode skip a video whose ``<stem>_va_preds`` already exists
(spec 11.4). Differences, each fixing a seed bug:

* ``s`` is the frame's true presentation time in seconds, not ``row / round(fps)`` (spec 10.3.5), so rows after a
  gap without a face, or in a variable-frame-rate video, keep their real time.
* The values are the smoothed ones when smoothing is on (the seed smoothed before writing), but every frame with a
  face keeps its own row (``mimamo_ops.outputs.smoothing``) instead of losing ``w - 1`` rows.
* With several faces the rows of all faces are written, ordered by frame then face, and a fourth column ``face``
  (the track's face id) tells them apart; the seed mixed the faces up (spec 11.3). One face (or none) keeps the
  seed's three columns.
* A video with no face gets a CSV with the header only, so directory mode does not retry it forever.

Floats are written in the shortest form that reads back to the same value: float32 for valence/arousal, float64
for ``s`` (pandas' default float format does the same).
"""
import csv
import logging
import os
import posixpath
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from mimamo_ops.outputs.series import FaceSeries

__all__ = [
    "SEED_COLUMNS",
    "FACE_COLUMN",
    "seed_output_stem",
    "build_seed_rows",
    "write_seed_csv",
    "write_seed_outputs",
]

LOGGER = logging.getLogger(__name__)

SEED_COLUMNS = ("valence", "arousal", "s")
FACE_COLUMN = "face"
CSV_SUFFIX = "_va_preds.csv"
PLOT_SUFFIX = "_va_trend.png"

PathLike = Union[str, os.PathLike]


def seed_output_stem(video_uri: str) -> str:
    """Returns the file stem the seed used for a video's outputs: its base name without the extension.

    Works for local paths and URIs (``gs://bucket/a/talk.mp4`` gives ``talk``). Two videos with the same base
    name in different folders share a stem; callers writing both into one folder must tell them apart.
    """
    base = posixpath.basename(video_uri.replace("\\", "/").rstrip("/"))
    return os.path.splitext(base)[0]


def _format_float32(value: np.float32) -> str:
    return str(np.float32(value))


def build_seed_rows(series: Sequence[FaceSeries]) -> Tuple[Tuple[str, ...], List[Tuple[str, ...]]]:
    """Builds the seed-format CSV rows of one video (module docstring).

    Args:
        series: the video's face tracks (any number, possibly none).

    Returns:
        (header, rows): the header is ``("valence", "arousal", "s")``, plus ``"face"`` when there are two or more
        tracks; each row holds the formatted fields of one (face, frame), valence/arousal from the smoothed
        values, ``s`` the timestamp in seconds; rows are sorted by frame index, then face id.
    """
    with_face = len(series) > 1
    header = SEED_COLUMNS + ((FACE_COLUMN,) if with_face else ())
    keyed = []
    for track in series:
        values = np.asarray(track.smoothed_valence_arousal, dtype=np.float32)
        for row in range(len(track.frame_indices)):
            fields = (
                _format_float32(values[row, 0]),
                _format_float32(values[row, 1]),
                repr(float(track.timestamps_s[row])),
            )
            if with_face:
                fields += (str(int(track.face_id)),)
            keyed.append(((int(track.frame_indices[row]), int(track.face_id)), fields))
    keyed.sort(key=lambda item: item[0])
    return header, [fields for _, fields in keyed]


def write_seed_csv(path: PathLike, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    """Writes rows from :func:`build_seed_rows` as a comma-separated file with a header line and no index.

    The file is written to a temporary name and renamed into place, so a reader (or the seed-style directory
    mode, which skips videos whose CSV exists) never sees half a file.

    Returns:
        ``Path(path)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(partial, path)
    return path


def write_seed_outputs(out_dir: PathLike, video_uri: str, series: Sequence[FaceSeries], *,
                       stem: Optional[str] = None, duration_s: Optional[float] = None,
                       frame_count: Optional[int] = None, with_plot: bool = True) -> Tuple[Path, Optional[Path]]:
    """Writes one video's ``<stem>_va_preds.csv`` and (optionally) ``<stem>_va_trend.png`` into ``out_dir``.

    Args:
        out_dir: local results folder, created if missing.
        video_uri: the video's path or URI (names the files and titles the plot).
        series: the video's face tracks (none for a video without a face).
        stem: file stem; default :func:`seed_output_stem` of ``video_uri``.
        duration_s: the video's duration in seconds, to shade a final stretch without a face; None if unknown.
        frame_count: the video's number of frames, to tell whether the last frame had a face; None if unknown.
        with_plot: also draw the trend plot (:func:`mimamo_ops.outputs.plots.plot_va_trend`).

    Returns:
        (csv path, png path or None).
    """
    out_dir = Path(out_dir)
    stem = stem or seed_output_stem(video_uri)
    header, rows = build_seed_rows(series)
    csv_path = write_seed_csv(out_dir / (stem + CSV_SUFFIX), header, rows)
    png_path = None
    if with_plot:
        from mimamo_ops.outputs.plots import plot_va_trend  # matplotlib is only imported when a plot is wanted

        png_path = out_dir / (stem + PLOT_SUFFIX)
        plot_va_trend(series, png_path, title=posixpath.basename(video_uri), duration_s=duration_s,
                      frame_count=frame_count)
    LOGGER.info("%s: wrote %d rows to %s%s", video_uri, len(rows), csv_path,
                f" and the plot {png_path}" if png_path else "")
    return csv_path, png_path

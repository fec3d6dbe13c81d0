"""``mimamo plot OUTPUT [--video ID] [--out DIR] [--csv] [--annotated-video]``: per-video outputs from a run's tables.

For each video of the run (or the one named by ``--video``: its ``video_id``, URI or file name) it draws
``<stem>_va_trend.png`` (:func:`mimamo_ops.outputs.plots.plot_va_trend`) from the Parquet ``frames`` table; ``--csv``
also writes the seed's ``<stem>_va_preds.csv`` (:mod:`mimamo_ops.outputs.seed_outputs`), and ``--annotated-video``
re-encodes the source video with each face's box and valence/arousal gauges as ``<stem>_annotated.mp4``
(:func:`mimamo_ops.outputs.annotate.annotate_video`), which needs the video's URI from the table to be a readable local
file. Failed videos have nothing to draw and are skipped. Two videos with the same file name get their
``video_id`` added to the stem.
"""
import argparse
import collections
import logging
import os
from pathlib import Path
from typing import Dict, List

from beam_pipeline.cli.report import VideoRecord, find_video, list_videos, open_run, read_face_series
from mimamo_ops.outputs.annotate import annotate_video
from mimamo_ops.outputs.plots import plot_va_trend
from mimamo_ops.outputs.seed_outputs import PLOT_SUFFIX, seed_output_stem, write_seed_outputs

__all__ = ["register", "plot_command", "assign_stems", "resolve_local_video"]

LOGGER = logging.getLogger(__name__)
ANNOTATED_SUFFIX = "_annotated.mp4"


def register(subparsers) -> None:
    """Adds the ``plot`` sub-command to the ``mimamo`` parser."""
    parser = subparsers.add_parser(
        "plot",
        help="draw valence/arousal plots (and optionally seed CSVs and annotated videos) from a run's output",
        description=__doc__,
    )
    parser.add_argument("output", metavar="OUTPUT", help="the --output folder of a finished `mimamo run` (local)")
    parser.add_argument("--video", metavar="ID", help="only this video: its video_id, URI or file name")
    parser.add_argument("--out", metavar="DIR", help="where to write (default: OUTPUT/plots)")
    parser.add_argument("--csv", action="store_true", help="also write the seed's <stem>_va_preds.csv")
    parser.add_argument("--annotated-video", action="store_true",
                        help="also write <stem>_annotated.mp4: the video with face boxes and valence/arousal "
                             "gauges (the video must be readable locally at its URI)")
    parser.set_defaults(handler=plot_command)


def assign_stems(videos: List[VideoRecord]) -> Dict[str, str]:
    """Returns ``video_id -> file stem``: the file name without extension, plus ``-<video_id>`` when shared."""
    counts = collections.Counter(seed_output_stem(video.video_uri) for video in videos)
    stems = {}
    for video in videos:
        stem = seed_output_stem(video.video_uri)
        stems[video.video_id] = stem if counts[stem] == 1 else f"{stem}-{video.video_id}"
    return stems


def resolve_local_video(video_uri: str) -> Path:
    """Returns the local path of a video URI (a plain path or ``file://``).

    Raises:
        ValueError: the URI has another scheme (``gs://``, ...).
        FileNotFoundError: the file is not there any more.
    """
    path = video_uri[len("file://"):] if video_uri.startswith("file://") else video_uri
    if "://" in path:
        raise ValueError(f"{video_uri}: --annotated-video needs the video on this machine; copy it here and plot "
                         "from a run over the local copy")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{video_uri}: the video is not there any more; --annotated-video needs it")
    return Path(path)


def plot_command(args: argparse.Namespace, extra_args: List[str]) -> int:  # pylint: disable=unused-argument
    """Writes the plots (and CSVs, annotated videos) of the chosen videos; returns 0.

    Raises:
        ValueError: ``--video`` matches no video or one that failed; a video to annotate is not local.
        FileNotFoundError: OUTPUT is not a run's output; a video to annotate is missing.
    """
    out_dir = Path(args.out) if args.out else Path(args.output) / "plots"
    connection = open_run(args.output)
    try:
        videos = list_videos(connection)
        stems = assign_stems(videos)
        if args.video:
            chosen = find_video(connection, args.video)
            if chosen.status == "failed":
                raise ValueError(f"{chosen.video_uri}: the run failed on this video at stage {chosen.error_stage} "
                                 f"({chosen.error}); there is nothing to plot")
            videos = [chosen]
        out_dir.mkdir(parents=True, exist_ok=True)
        for video in videos:
            if video.status == "failed":
                LOGGER.info("%s: skipped (failed at stage %s)", video.video_uri, video.error_stage)
                continue
            series = read_face_series(connection, video.video_id)
            stem = stems[video.video_id]
            if args.csv:
                write_seed_outputs(out_dir, video.video_uri, series, stem=stem, duration_s=video.duration_s,
                                   frame_count=video.frame_count)
            else:
                plot_va_trend(series, out_dir / (stem + PLOT_SUFFIX), title=os.path.basename(video.video_uri),
                              duration_s=video.duration_s, frame_count=video.frame_count)
            LOGGER.info("%s: plot %s", video.video_uri, out_dir / (stem + PLOT_SUFFIX))
            if args.annotated_video:
                if not series:
                    LOGGER.info("%s: no face found, no annotated video", video.video_uri)
                    continue
                annotate_video(resolve_local_video(video.video_uri), out_dir / (stem + ANNOTATED_SUFFIX), series)
    finally:
        connection.close()
    return 0

"""``mimamo run INPUT... --output DIR [options]``: the pipeline on the local DirectRunner, with progress bars.

With ``--watch`` it keeps running on new videos until Ctrl-C (``beam_pipeline.watch``).

Every ``MimamoOptions`` flag is accepted; any other flag is handed to Beam as is (e.g. ``--runner``,
``--direct_num_workers``). Options can come from a file: ``mimamo run @options.txt`` with one option per line.
"""
import argparse
import logging
import os
import sys
import tempfile
from typing import Dict, List

from beam_pipeline.flags import add_mimamo_arguments

# Beam, torch, the pipeline and the plotting command are imported by the functions that use them, so that
# `mimamo run --help` stays quick.

__all__ = ["register", "count_videos", "read_counters"]

LOGGER = logging.getLogger(__name__)
SEED_OUTPUTS_DIR = "seed"


def _option_dests() -> List[str]:
    parser = argparse.ArgumentParser(add_help=False)
    add_mimamo_arguments(parser)
    return [action.dest for action in parser._actions]  # pylint: disable=protected-access


def register(subparsers) -> None:
    """Adds the ``run`` sub-command to the ``mimamo`` parser."""
    parser = subparsers.add_parser(
        "run",
        help="predict valence/arousal for videos into Parquet (local DirectRunner)",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="video files, directories, globs or list files (local, gs://, s3://)",
    )
    parser.add_argument("--no_progress", action="store_true", help="do not draw progress bars on stderr")
    parser.add_argument(
        "--seed_outputs", action="store_true",
        help="after the run, also write the seed's per-video <stem>_va_preds.csv and <stem>_va_trend.png "
        "to OUTPUT/seed/ (local output only; the same as `mimamo plot OUTPUT --csv --out OUTPUT/seed`)",
    )
    add_mimamo_arguments(parser)
    parser.set_defaults(handler=run_command, accepts_extra_args=True)


def count_videos(inputs: List[str], video_extensions: List[str]) -> int:
    """Counts the rows the ``videos`` table will get: matched videos plus one per input that matches nothing."""
    from beam_pipeline.inputs import expand_input

    videos = set()
    unmatched = 0
    for uri in inputs:
        try:
            videos.update(expand_input(uri, video_extensions))
        except FileNotFoundError:
            unmatched += 1
    return len(videos) + unmatched


def read_counters(result) -> Dict[str, int]:
    """Committed counters of the ``mimamo`` namespace, by name (summed over steps)."""
    from apache_beam.metrics.metric import MetricsFilter

    from beam_pipeline.transforms import METRICS_NAMESPACE

    counters: Dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]:
        name = counter.key.metric.name
        counters[name] = counters.get(name, 0) + int(counter.committed or 0)
    return counters


def run_command(args: argparse.Namespace, extra_args: List[str]) -> int:
    """Runs the pipeline for ``args`` (extra flags go to Beam) and prints a summary; returns the exit status."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipeline.pipeline import FRAMES_DIR, VIDEOS_DIR
    from beam_pipeline.progress import ProgressBars, read_progress
    from beam_pipeline.run import run_with_options

    values = {dest: getattr(args, dest) for dest in _option_dests() if hasattr(args, dest)}
    values["input"] = list(args.inputs) + list(args.input or [])
    if args.watch:  # a daemon: no progress bars, a summary once Ctrl-C has stopped it
        report = run_with_options(PipelineOptions(extra_args, **values))
        print(f"watch stopped: {len(report.videos)} video(s) in {report.batches} batch(es)\n"
              f"frames: {values['output'].rstrip('/')}/{FRAMES_DIR}/\n"
              f"videos: {values['output'].rstrip('/')}/{VIDEOS_DIR}/")
        return 0
    with tempfile.TemporaryDirectory(prefix="mimamo-progress-") as progress_dir:
        if not args.no_progress:
            values["progress_dir"] = progress_dir
        options = PipelineOptions(extra_args, **values)
        if args.no_progress:
            result = run_with_options(options)
        else:
            total = count_videos(values["input"], values["video_extensions"])
            with ProgressBars(progress_dir, total, sys.stderr):
                result = run_with_options(options)
        counters = read_counters(result)
        if not args.no_progress and not counters:
            progress = read_progress(progress_dir)
            counters = {"frames_decoded": progress.frames_decoded, "videos_failed": progress.videos_failed}
    print(
        f"videos: {counters.get('videos_ok', 0)} ok, {counters.get('videos_no_face', 0)} without a face, "
        f"{counters.get('videos_failed', 0)} failed; {counters.get('frames_decoded', 0)} frames decoded, "
        f"{counters.get('frame_rows', 0)} frame rows written\n"
        f"frames: {values['output'].rstrip('/')}/{FRAMES_DIR}/\n"
        f"videos: {values['output'].rstrip('/')}/{VIDEOS_DIR}/"
    )
    if args.seed_outputs:
        from beam_pipeline.commands.plot import plot_command

        seed_dir = os.path.join(values["output"], SEED_OUTPUTS_DIR)
        plot_command(argparse.Namespace(output=values["output"], video=None, out=seed_dir, csv=True,
                                        annotated_video=False), [])
        print(f"seed outputs: {seed_dir}/")
    return 0

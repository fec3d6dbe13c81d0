"""``mimamo report OUTPUT``: a plain-text summary of a finished run, read from its Parquet tables with DuckDB.

It prints the videos by status, each failure with its stage and reason, the frames found per face, and the mean
valence/arousal of each video (see :mod:`beam_pipeline.cli.report`).
"""
import argparse
import sys
from typing import List

from beam_pipeline.cli.report import build_run_report, format_run_report

__all__ = ["register", "report_command"]


def register(subparsers) -> None:
    """Adds the ``report`` sub-command to the ``mimamo`` parser."""
    parser = subparsers.add_parser(
        "report",
        help="summarise a run's output: videos by status, failures, frames per face, mean valence/arousal",
        description=__doc__,
    )
    parser.add_argument("output", metavar="OUTPUT", help="the --output folder of a finished `mimamo run` (local)")
    parser.set_defaults(handler=report_command)


def report_command(args: argparse.Namespace, extra_args: List[str]) -> int:  # pylint: disable=unused-argument
    """Prints the report of ``args.output`` to stdout; returns 0."""
    sys.stdout.write(format_run_report(build_run_report(args.output)))
    return 0

"""mimamo: MIMAMO-Net valence/arousal for videos, aligned faces and whole corpora (Apache Beam).

Each sub-command lives in a module of ``beam_pipeline.cli.commands``.

Only the chosen sub-command's module is imported (``mimamo --help`` and ``mimamo weights show`` import neither
Apache Beam nor torch); the others appear in the top-level help through their one-line summaries below, which
``tests/test_cli.py`` keeps equal to what each module registers.
"""
import argparse
import importlib
import logging
import shlex
import sys
from typing import List, Optional

from beam_pipeline.library_warnings import log_library_warnings
from mimamo_ops import __version__
from mimamo_ops.errors import MimamoError

# sub-command name -> module in beam_pipeline.cli.commands; each module defines register(subparsers).
COMMAND_MODULES = {
    "weights": "weights",
    "predict-aligned": "predict_aligned",
    "faces": "faces",
    "run": "run",
    "report": "report",
    "plot": "plot",
}
# sub-command name -> its one-line help, as the module registers it
COMMAND_SUMMARIES = {
    "weights": "fetch, import or show the model weights",
    "predict-aligned": "valence/arousal for a folder of aligned faces",
    "faces": "extract aligned face crops from a video",
    "run": "predict valence/arousal for videos into Parquet (local runner)",
    "report": "summarise a run's output: videos by status, failures, frames per face, mean valence/arousal",
    "plot": "draw valence/arousal plots (and optionally seed CSVs and annotated videos) from a run's output",
}


class _ArgumentParser(argparse.ArgumentParser):
    """Reads ``@file`` arguments as shell-like words, so a line may hold ``--opt value`` or ``--opt=value``.

    Blank lines and ``#`` comments are ignored (the seed's edit-once ``run.sh`` use).
    """

    def convert_arg_line_to_args(self, arg_line: str) -> List[str]:
        return shlex.split(arg_line, comments=True)


def _chosen_command(argv: Optional[List[str]]) -> Optional[str]:
    """The sub-command ``argv`` names (its first word that is a command name), or None."""
    return next((word for word in argv or () if word in COMMAND_MODULES), None)


def build_parser(argv: Optional[List[str]] = None) -> argparse.ArgumentParser:
    """The ``mimamo`` parser. Only the sub-command that ``argv`` names is imported and registered in full
    (all of them when ``argv`` names none and is not given); the others are one-line entries."""
    parser = _ArgumentParser(prog="mimamo", description=__doc__.splitlines()[0], fromfile_prefix_chars="@")
    parser.add_argument("--version", action="version", version=f"mimamo-beam {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _chosen_command(argv)
    for name, module_name in COMMAND_MODULES.items():
        if (chosen is not None and name != chosen) or (chosen is None and argv is not None):
            subparsers.add_parser(name, help=COMMAND_SUMMARIES[name], add_help=False)
            continue
        try:
            module = importlib.import_module(f"beam_pipeline.cli.commands.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"beam_pipeline.cli.commands.{module_name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Parses ``argv`` and runs the chosen sub-command; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # before the sub-command's imports: Beam's dependencies warn as they load; `mimamo run` logs them
    log_library_warnings()
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if not hasattr(args, "handler"):  # the command word came from an @file: register that command in full
        parser = build_parser([args.command])
        args, extra = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if extra and not getattr(args, "accepts_extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.handler(args, extra) or 0)
    except (MimamoError, ValueError, FileNotFoundError) as error:
        print(f"mimamo {args.command}: error: {error}", file=sys.stderr)
        return 2


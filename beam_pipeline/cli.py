"""mimamo: MIMAMO-Net valence/arousal for videos, aligned faces and whole corpora (Apache Beam).

Each sub-command lives in a module of ``beam_pipeline.commands``.

Sub-command modules are imported lazily by name so that ``mimamo weights show`` does not pay for
importing Apache Beam or torch.
"""
import argparse
import importlib
import logging
import shlex
import sys
from typing import List, Optional

from mimamo_ops import __version__
from mimamo_ops.errors import MimamoError

# sub-command name -> module in beam_pipeline.commands; each module defines register(subparsers).
COMMAND_MODULES = {
    "weights": "weights",
    "predict-aligned": "predict_aligned",
    "faces": "faces",
    "run": "run",
    "report": "report",
    "plot": "plot",
}


class _ArgumentParser(argparse.ArgumentParser):
    """Reads ``@file`` arguments as shell-like words, so a line may hold ``--opt value`` or ``--opt=value``.

    Blank lines and ``#`` comments are ignored (the seed's edit-once ``run.sh`` use).
    """

    def convert_arg_line_to_args(self, arg_line: str) -> List[str]:
        return shlex.split(arg_line, comments=True)


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="mimamo", description=__doc__.splitlines()[0], fromfile_prefix_chars="@")
    parser.add_argument("--version", action="version", version=f"mimamo-beam {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES.values():
        try:
            module = importlib.import_module(f"beam_pipeline.commands.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"beam_pipeline.commands.{module_name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Parses ``argv`` and runs the chosen sub-command; returns the process exit status."""
    parser = build_parser()
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


if __name__ == "__main__":
    sys.exit(main())

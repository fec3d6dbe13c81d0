"""Entry point: ``python -m beam_pipeline.run --input VIDEO... --output DIR [options]``.

Every Beam option works too, e.g. ``--runner=PortableRunner --job_endpoint=HOST:PORT``.

Exit status (the same as ``mimamo run``): 0 when every input ended ``ok`` or ``no_face``; 3
(``EXIT_SOME_FAILED``) when the run finished and wrote its tables but some inputs failed (read from the job's
``videos_failed`` counter, so 0 on a runner that reports no metrics); 2 for a bad option, output or weights
file (one line on stderr); 1 for a crash (Python's traceback).

The default runner (none given, or ``DirectRunner``) is Beam's Python FnApiRunner, built as the DirectRunner
builds it but without its first try of the Prism runner, which downloads a binary from GitHub
(``beam_compat.make_local_runner``), so a local run never touches the network.
"""
import argparse
import logging
import os
import sys
from typing import List, Optional, Sequence

from beam_pipeline.library_warnings import log_library_warnings

if __name__ == "__main__":  # before Beam's import: its dependencies warn as they load
    log_library_warnings()

# pylint: disable=wrong-import-position
import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from beam_pipeline.beam_compat import make_local_runner, undo_output_abbreviation, use_anonymous_gcs_for_emulator
from beam_pipeline.flags import add_mimamo_arguments
from beam_pipeline.inputs import InputMatch
from beam_pipeline.metrics import read_counters
from beam_pipeline.options import MimamoOptions
from beam_pipeline.pipeline import build_pipeline
from beam_pipeline.resume import is_resumable, run_resumable
from beam_pipeline.watch import watch_inputs
from mimamo_ops.errors import MimamoError
# pylint: enable=wrong-import-position

__all__ = ["run", "run_with_options", "configure_logging", "main",
           "EXIT_OK", "EXIT_CRASH", "EXIT_USAGE", "EXIT_SOME_FAILED", "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_CRASH = 1  # an unexpected error
EXIT_USAGE = 2  # a bad option, output or weights file, found before any work (argparse's status too)
EXIT_SOME_FAILED = 3  # the run finished and wrote its tables, but some inputs failed
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT
EXPECTED_ERRORS = (MimamoError, ValueError, OSError)

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
_PACKAGE_LOGGERS = ("beam_pipeline", "mimamo_ops")


def configure_logging(options: MimamoOptions) -> None:
    """``--log``: INFO to the console; ``--logdir``: DEBUG to ``<logdir>/mimamo.log`` (spec 11.5)."""
    handlers: List[logging.Handler] = []
    if options.log:
        console = logging.StreamHandler()
        console.setLevel(logging.INFO)
        handlers.append(console)
    if options.logdir:
        os.makedirs(options.logdir, exist_ok=True)
        file_handler = logging.FileHandler(os.path.join(options.logdir, "mimamo.log"))
        file_handler.setLevel(logging.DEBUG)
        handlers.append(file_handler)
    for name in _PACKAGE_LOGGERS:
        logger = logging.getLogger(name)
        for old in [handler for handler in logger.handlers if getattr(handler, "mimamo_run", False)]:
            logger.removeHandler(old)  # a second run in the same process replaces the first run's handlers
            old.close()
        for handler in handlers:
            handler.mimamo_run = True
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
            logger.addHandler(handler)
        if handlers:
            logger.setLevel(logging.DEBUG if options.logdir else logging.INFO)


def _apply_local_workers(options: PipelineOptions) -> None:
    """``--n_workers N`` on the DirectRunner: N worker processes (multi_processing when N > 1)."""
    workers = options.view_as(MimamoOptions).n_workers
    runner = options.view_as(StandardOptions).runner
    if workers is None or runner not in (None, "DirectRunner", "direct"):
        return
    direct = options.view_as(DirectOptions)
    direct.direct_num_workers = workers
    if workers > 1:
        direct.direct_running_mode = "multi_processing"


def _run_once(options: PipelineOptions, test_pipeline: Optional[beam.Pipeline] = None,
              entries: Optional[Sequence[InputMatch]] = None):
    if test_pipeline is not None:
        pipeline = test_pipeline
    else:
        pipeline = beam.Pipeline(runner=make_local_runner(options), options=options)
    build_pipeline(pipeline, options, entries)
    result = pipeline.run()
    result.wait_until_finish()
    return result


def run_with_options(options: PipelineOptions, test_pipeline: Optional[beam.Pipeline] = None):
    """Builds the graph on ``test_pipeline`` (or a new pipeline), runs it and waits for it.

    With ``--watch``, keeps running batches on new videos until Ctrl-C instead (``beam_pipeline.watch``). A
    local run without ``test_pipeline`` runs and commits ``--videos_per_commit`` videos at a time, so that it can
    be resumed (``beam_pipeline.resume``).

    Returns:
        The ``PipelineResult`` (metrics in the ``mimamo`` namespace; a resumable run's ``CombinedResult`` sums its
        batches'); with ``--watch``, the ``WatchReport``.
    """
    configure_logging(options.view_as(MimamoOptions))
    undo_output_abbreviation(options, options.view_as(MimamoOptions).output)
    _apply_local_workers(options)
    use_anonymous_gcs_for_emulator()
    if options.view_as(MimamoOptions).watch:
        return watch_inputs(options, _run_once)
    if test_pipeline is None and is_resumable(options):
        return run_resumable(options, lambda batch, entries: _run_once(batch, entries=entries))
    return _run_once(options, test_pipeline)


def run(argv: Optional[List[str]] = None, test_pipeline: Optional[beam.Pipeline] = None):
    """Parses ``argv`` (Beam's options and ``MimamoOptions``), runs the pipeline and returns its result."""
    return run_with_options(PipelineOptions(argv), test_pipeline=test_pipeline)


def print_help() -> None:
    """``--help``: the ``MimamoOptions`` flags with their help text (Beam's ``PipelineOptions`` would print none)."""
    parser = argparse.ArgumentParser(prog="python -m beam_pipeline.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Beam's own options (--runner, --project, ...) are accepted as well.")
    add_mimamo_arguments(parser)
    parser.print_help()


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m beam_pipeline.run``: runs the pipeline; returns the exit status (module docstring)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "-h" in argv or "--help" in argv:
        print_help()
        return EXIT_OK
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    try:
        result = run(argv)
    except EXPECTED_ERRORS as error:
        print(f"beam_pipeline.run: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if not hasattr(result, "metrics"):  # --watch: a report, after Ctrl-C
        return EXIT_OK
    failed = read_counters(result).get("videos_failed", 0)
    if failed:
        print(f"beam_pipeline.run: {failed} input(s) failed; the reasons are in the videos table "
              "(status 'failed', columns error_stage and error)", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

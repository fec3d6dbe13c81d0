"""Entry point: ``python -m beam_pipeline.run --input VIDEO... --output DIR [options]``.

Every Beam option works too, e.g. ``--runner=PortableRunner --job_endpoint=HOST:PORT``.

Exit status (the same as ``mimamo run``): 0 when every input ended ``ok`` or ``no_face``; 3
(``EXIT_SOME_FAILED``) when the run finished and wrote its tables but some inputs failed (read from the job's
``videos_failed`` counter, so 0 on a runner that reports no metrics); 2 for a bad option, output or weights
file (one line on stderr); 1 for a crash (Python's traceback).

The default runner (none given, or ``DirectRunner``) is Beam's Python FnApiRunner, built as the DirectRunner
builds it but without its first try of the Prism runner, which downloads a binary from GitHub
(``beam_compat.make_local_runner``), so a local run never touches the network.

Every run, on every runner and output, holds the output's lock while it runs (``beam_pipeline.locks``), checks
and records what it is (``_run.json``), skips the videos earlier runs committed and runs those that failed for a
transient reason again (``beam_pipeline.resume``); the pipeline commits each video and then builds the tables
from every commit (``beam_pipeline.pipeline``). A run killed at any moment is resumed by the same command.
"""
import argparse
import logging
import os
import sys
from typing import AbstractSet, List, Optional, Sequence

from beam_pipeline.library_warnings import log_library_warnings

if __name__ == "__main__":  # before Beam's import: its dependencies warn as they load
    log_library_warnings()

# pylint: disable=wrong-import-position
import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineState

from beam_pipeline.beam_compat import make_local_runner, undo_output_abbreviation, use_anonymous_gcs_for_emulator
from beam_pipeline.flags import add_mimamo_arguments
from beam_pipeline.inputs import InputMatch
from beam_pipeline.locks import OutputLock
from beam_pipeline.metrics import read_counters
from beam_pipeline.options import (MimamoOptions, keep_sdk_environments, redact_secrets,
                                   secret_option_values, secret_values, validate_options)
from beam_pipeline.pipeline import build_pipeline
from beam_pipeline.resume import RunPlan, build_manifest, prepare_output
from beam_pipeline.watch import watch_inputs
from mimamo_ops.errors import MimamoError
# pylint: enable=wrong-import-position

__all__ = ["run", "run_with_options", "run_pipeline", "configure_logging", "main", "RunResult", "SecretFilter",
           "EXIT_OK", "EXIT_CRASH", "EXIT_USAGE", "EXIT_SOME_FAILED", "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_CRASH = 1  # an unexpected error
EXIT_USAGE = 2  # a bad option, output or weights file, found before any work (argparse's status too)
EXIT_SOME_FAILED = 3  # the run finished and wrote its tables, but some inputs failed
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT
EXPECTED_ERRORS = (MimamoError, ValueError, OSError)

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
_PACKAGE_LOGGERS = ("beam_pipeline", "mimamo_ops")


class SecretFilter(logging.Filter):
    """Replaces the values of credential options (``options.secret_values``) in every record by ``***``, so
    that no log this process writes holds them, whatever logger the record comes from."""

    def __init__(self, secrets: Sequence[str]):
        super().__init__()
        self._secrets = [secret for secret in secrets if secret]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        record.msg, record.args = redact_secrets(record.getMessage(), self._secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text, self._secrets)
        return True


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
    secrets = SecretFilter(secret_option_values(options))
    for handler in handlers:
        handler.addFilter(secrets)
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


class RunResult:
    """A run's ``PipelineResult`` (``metrics()``, ``state``, ``wait_until_finish``) with what it found on its
    output before it started.

    Attributes:
        result: the pipeline's result.
        plan: the videos earlier runs had committed (skipped) and those run again (``resume.RunPlan``).
    """

    def __init__(self, result, plan: RunPlan):
        self.result = result
        self.plan = plan

    @property
    def state(self):
        return self.result.state

    def wait_until_finish(self, duration: Optional[int] = None):
        return self.result.wait_until_finish(duration)

    def metrics(self):
        return self.result.metrics()


def run_pipeline(options: PipelineOptions, test_pipeline: Optional[beam.Pipeline] = None,
                 entries: Optional[Sequence[InputMatch]] = None, committed: AbstractSet[str] = frozenset()):
    """Builds the run's pipeline (``build_pipeline``) on ``test_pipeline`` or a new one, runs it and waits for it.

    No lock and no run record: the caller holds the output (``run_with_options``, or watch mode for its
    batches).

    Returns:
        The ``PipelineResult``.

    Raises:
        RuntimeError: the job failed (the runner's error).
    """
    if test_pipeline is not None:
        pipeline = test_pipeline
    else:
        pipeline = beam.Pipeline(runner=make_local_runner(options), options=options)
    build_pipeline(pipeline, options, entries, committed)
    result = pipeline.run()
    state = result.wait_until_finish()
    if state not in (None, PipelineState.DONE):
        raise RuntimeError(f"the job ended {state}, not DONE; run the same command again to resume it")
    return result


def run_with_options(options: PipelineOptions, test_pipeline: Optional[beam.Pipeline] = None):
    """Runs the whole run: takes the output's lock, prepares it (resume), runs the pipeline, releases the lock.

    With ``--watch``, keeps running batches on new videos until Ctrl-C instead (``beam_pipeline.watch``), under
    the same lock.

    Returns:
        A ``RunResult`` (metrics in the ``mimamo`` namespace; ``table_*`` counters describe the whole tables,
        the others this run's work); with ``--watch``, the ``WatchReport``.

    Raises:
        ValueError: a bad option, or an output held by another live run or holding another run's results.
    """
    mimamo = options.view_as(MimamoOptions)
    configure_logging(mimamo)
    undo_output_abbreviation(options, mimamo.output)
    _apply_local_workers(options)
    keep_sdk_environments(options)
    use_anonymous_gcs_for_emulator()
    validate_options(mimamo)
    FileSystems.set_options(options)  # the S3 endpoint and keys, for the launcher's own reads and writes
    manifest = build_manifest(options)
    if mimamo.videos_per_commit is not None:
        logging.getLogger(__name__).warning("--videos_per_commit is deprecated and has no effect: every video is "
                                            "committed on its own")
    with OutputLock(mimamo.output):
        plan = prepare_output(mimamo.output, manifest)
        if mimamo.watch:
            return watch_inputs(options, run_pipeline, plan.committed)
        return RunResult(run_pipeline(options, test_pipeline, committed=plan.committed), plan)


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
    secrets = SecretFilter(secret_values(argv))
    for handler in logging.getLogger().handlers:
        handler.addFilter(secrets)
    try:
        result = run(argv)
    except EXPECTED_ERRORS as error:
        print(f"beam_pipeline.run: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if not hasattr(result, "metrics"):  # --watch: a report, after Ctrl-C
        return EXIT_OK
    counters = read_counters(result)
    failed = counters.get("table_videos_failed", counters.get("videos_failed", 0))
    if failed:
        print(f"beam_pipeline.run: {failed} input(s) failed; the reasons are in the videos table "
              "(status 'failed', columns error_stage and error)", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

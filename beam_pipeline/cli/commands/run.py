"""``mimamo run INPUT... --output DIR [options]``: the pipeline on the local runner, with progress bars.

With ``--watch`` it keeps running on new videos until Ctrl-C (``beam_pipeline.watch``).

Every ``MimamoOptions`` flag is accepted; any other flag is handed to Beam as is (e.g. ``--runner``,
``--direct_num_workers``). Options can come from a file: ``mimamo run @options.txt`` with one option per line.

Before any work the options, the output directory and the weight files are checked; each problem is one line
on stderr and exit status 2. The run's log (Beam's included) goes to ``OUTPUT/_logs/run-<UTC time>.log``, and
our packages' INFO lines also to stderr with ``--log`` (everything with ``-v``). Exit status: 0 when every
input ended ``ok`` or ``no_face``, 3 when the run finished and wrote its tables but some inputs failed, 2 for a
usage or start-up error, 1 for a crash (its traceback in the log), 130 after Ctrl-C.
"""
import argparse
import datetime
import logging
import os
import shlex
import sys
import tempfile
from typing import Dict, List, Optional, Tuple

from typing import TYPE_CHECKING

from beam_pipeline.flags import add_mimamo_arguments
from beam_pipeline.library_warnings import attach_log_file, detach_log_file

if TYPE_CHECKING:  # Beam, torch, the pipeline and plotting are imported where used: `mimamo run --help` stays quick
    from beam_pipeline.options import MimamoOptions

__all__ = ["register", "count_videos", "check_output", "check_weights_and_tables", "open_run_log", "close_run_log", "quiet_console", "LOGS_DIR"]

LOGGER = logging.getLogger(__name__)
SEED_OUTPUTS_DIR = "seed"
LOGS_DIR = "_logs"
LOG_FILE_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def _option_dests() -> List[str]:
    parser = argparse.ArgumentParser(add_help=False)
    add_mimamo_arguments(parser)
    return [action.dest for action in parser._actions]  # pylint: disable=protected-access


def register(subparsers) -> None:
    """Adds the ``run`` sub-command to the ``mimamo`` parser."""
    parser = subparsers.add_parser(
        "run",
        help="predict valence/arousal for videos into Parquet (local runner)",
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


def count_videos(inputs: List[str], video_extensions: List[str], committed: frozenset = frozenset()) -> int:
    """Counts the videos the pipeline will decode: matched entries not already known to fail, and not committed
    by an earlier run (``committed``: their ``video_id``)."""
    from beam_pipeline.inputs import expand_inputs
    from beam_pipeline.rows import compute_video_id

    return sum(1 for match in expand_inputs(inputs, video_extensions)
               if match.error is None and compute_video_id(match.uri) not in committed)


def _check_output_directory(output: str) -> None:
    """Creates a local ``output`` and its ``_logs``; raises ``ValueError`` (one line) when it cannot be used."""
    if os.path.exists(output) and not os.path.isdir(output):
        raise ValueError(f"--output={output!r}: is an existing file, not a directory")
    logs = os.path.join(output, LOGS_DIR)
    try:
        os.makedirs(logs, exist_ok=True)
        with tempfile.TemporaryFile(dir=logs):
            pass
    except OSError as error:
        raise ValueError(f"--output={output!r}: not writable ({error.strerror or error})") from None


def check_output(options: "MimamoOptions") -> None:
    """Checks the options and creates the output directory (first of the start-up checks).

    Raises:
        ValueError: a bad option, or an output that is a file or not writable (one line naming it).
    """
    from beam_pipeline.options import validate_options
    from beam_pipeline.remote_files import is_remote

    validate_options(options)
    if not is_remote(options.output):
        _check_output_directory(options.output)


def check_weights_and_tables(options: "MimamoOptions") -> None:
    """Checks that both weights files are right (the output's tables are checked by the run itself, under the
    output's lock: ``beam_pipeline.resume``).

    Raises:
        mimamo_ops.errors.MimamoError: a weights file is missing or is not that model's weights.
    """
    from beam_pipeline.config import model_and_face_configs
    from beam_pipeline.remote_files import is_remote
    from mimamo_ops.model.checkpoints import BACKBONE, MIMAMO
    from mimamo_ops.weights.cache import verify_weights_file

    model_config, _ = model_and_face_configs(options, worker_processes=1)
    for path, kind in ((model_config.checkpoint_path, MIMAMO), (model_config.backbone_path, BACKBONE)):
        if not is_remote(path):  # remote files were fetched and verified by model_and_face_configs
            verify_weights_file(path, kind)


def quiet_console(verbose: bool = False) -> None:
    """Takes the root logger's console handler off stderr (``-v`` keeps it): Beam's INFO lines go to the log only.

    ``--log`` still shows our packages' INFO lines on stderr (``beam_pipeline.run.configure_logging``).
    """
    if verbose:
        return
    # Muted rather than removed: with no root handler, a module-level logging.info() would add one again.
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # pylint: disable=unidiomatic-typecheck  # not FileHandler
            handler.setLevel(logging.CRITICAL + 1)


def open_run_log(output: str, verbose: bool = False) -> logging.FileHandler:
    """Sends every log record (Beam's too) to a new log file, at DEBUG level when ``verbose``.

    The caller removes the returned handler from the root logger when the run ends (:func:`close_run_log`).

    Returns:
        The handler; its ``baseFilename`` is ``OUTPUT/_logs/run-<UTC time>.log`` for a local output, else in the
        temporary directory.
    """
    from beam_pipeline.remote_files import is_remote

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    folder = os.path.join(tempfile.gettempdir(), "mimamo-logs") if is_remote(output) else os.path.join(output, LOGS_DIR)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"run-{stamp}.log")
    root = logging.getLogger()
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setLevel(logging.DEBUG if verbose else logging.INFO)
    file_handler.setFormatter(logging.Formatter(LOG_FILE_FORMAT))
    root.addHandler(file_handler)
    root.setLevel(file_handler.level)
    attach_log_file(file_handler)  # libraries' warnings, those raised before the file was open included
    return file_handler


def close_run_log(handler: Optional[logging.FileHandler]) -> None:
    """Detaches and closes the handler of :func:`open_run_log` (a no-op for None)."""
    if handler is not None:
        logging.getLogger().removeHandler(handler)
        detach_log_file(handler)
        handler.close()


def _log_location(handler: logging.FileHandler, output: str) -> str:
    """The log file as the user named the output (``out/_logs/run-....log`` for ``--output out``)."""
    from beam_pipeline.remote_files import is_remote

    if is_remote(output):
        return handler.baseFilename
    return os.path.join(output, LOGS_DIR, os.path.basename(handler.baseFilename))


def _table_count(counters: Dict[str, int], name: str) -> int:
    """A count of the tables (``table_<name>``, the whole output) when the runner reported it, else this run's."""
    return counters.get(f"table_{name}", counters.get(name, 0))


def _summary(counters: Dict[str, int], output: str, log_path: str, committed_before: int = 0) -> str:
    """The closing lines of a run: counts, where the tables are, where failures and the log are."""
    from beam_pipeline.sinks import FRAMES_DIR, VIDEOS_DIR

    output = output.rstrip("/")
    failed = _table_count(counters, "videos_failed")
    earlier = f" ({committed_before} committed by an earlier run)" if committed_before else ""
    lines = [
        f"videos: {_table_count(counters, 'videos_ok')} ok, {_table_count(counters, 'videos_no_face')} without a "
        f"face, {failed} failed{earlier}; {counters.get('frames_decoded', 0)} frames decoded, "
        f"{_table_count(counters, 'frame_rows')} frame rows in the tables",
        f"frames: {output}/{FRAMES_DIR}/",
        f"videos: {output}/{VIDEOS_DIR}/",
    ]
    if failed:
        lines.append(f"{failed} input(s) failed: the reasons are in {output}/{VIDEOS_DIR}/ (status 'failed', "
                     f"columns error_stage and error; `mimamo report {output}`) and in the log")
    lines.append(f"log: {log_path}")
    return "\n".join(lines)


def _run_pipeline(args: argparse.Namespace, extra_args: List[str], values: Dict[str, object]
                  ) -> Tuple[Dict[str, int], int]:
    """Runs the pipeline, with progress bars unless ``--no_progress``; returns the ``mimamo`` counters and the
    number of videos earlier runs had committed."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipeline.cli.progress import ProgressBars
    from beam_pipeline.progress_records import read_progress
    from beam_pipeline.metrics import read_counters
    from beam_pipeline.resume import committed_video_ids
    from beam_pipeline.run import run_with_options

    with tempfile.TemporaryDirectory(prefix="mimamo-progress-") as progress_dir:
        if not args.no_progress:
            values["progress_dir"] = progress_dir
        options = PipelineOptions(extra_args, **values)
        if args.no_progress:
            result = run_with_options(options)
        else:
            FileSystems.set_options(options)
            committed = committed_video_ids(values["output"])
            total = count_videos(values["input"], values["video_extensions"], committed)
            with ProgressBars(progress_dir, total, sys.stderr):
                result = run_with_options(options)
        counters = read_counters(result)
        if not args.no_progress and not counters:
            progress = read_progress(progress_dir)
            counters = {"frames_decoded": progress.frames_decoded, "videos_failed": progress.videos_failed}
    return counters, len(result.plan.committed)


def run_command(args: argparse.Namespace, extra_args: List[str]) -> int:
    """Checks, runs the pipeline for ``args`` (extra flags go to Beam), prints a summary; returns the exit status."""
    values = {dest: getattr(args, dest) for dest in _option_dests() if hasattr(args, dest)}
    values["input"] = list(args.inputs) + list(args.input or [])
    verbose = bool(getattr(args, "verbose", False))
    quiet_console(verbose)  # before Beam's import, whose libraries warn as they load (cli.main logs warnings)
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipeline.options import MimamoOptions, redact_secrets, secret_values
    from beam_pipeline.run import EXIT_CRASH, EXIT_INTERRUPTED, EXIT_USAGE, EXPECTED_ERRORS, SecretFilter

    log: Optional[logging.FileHandler] = None
    # credentials given on the command line (or in an @file) never reach a log or the console
    hidden = secret_values(extra_args) + secret_values(sys.argv[1:])
    secrets = SecretFilter(hidden)
    console_handlers = list(logging.getLogger().handlers)
    for handler in console_handlers:
        handler.addFilter(secrets)
    try:
        options = PipelineOptions(extra_args, **values)
        mimamo = options.view_as(MimamoOptions)
        check_output(mimamo)
        log = open_run_log(values["output"], verbose)
        log.addFilter(secrets)
        return _checked_run(args, extra_args, values, mimamo, _log_location(log, values["output"]))
    except KeyboardInterrupt:
        print("mimamo run: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except EXPECTED_ERRORS as error:
        if log is not None:
            LOGGER.info("mimamo run stopped: %s", error, exc_info=True)
        print(redact_secrets(f"mimamo run: error: {error}", hidden), file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # pylint: disable=broad-except  # a crash: one line here, the traceback in the log
        LOGGER.exception("mimamo run crashed")
        where = f"; the traceback is in {log.baseFilename}" if log is not None else ""
        print(redact_secrets(f"mimamo run: internal error: {type(error).__name__}: {error}{where}", hidden),
              file=sys.stderr)
        return EXIT_CRASH
    finally:
        for handler in console_handlers:
            handler.removeFilter(secrets)
        close_run_log(log)


def _checked_run(args: argparse.Namespace, extra_args: List[str], values: Dict[str, object],
                 mimamo: "MimamoOptions", log_path: str) -> int:
    """The rest of ``run_command`` once the log is open: the remaining checks, the run, the summary."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipeline.cli.commands.plot import plot_command
    from beam_pipeline.sinks import FRAMES_DIR, VIDEOS_DIR
    from beam_pipeline.run import EXIT_OK, EXIT_SOME_FAILED, run_with_options

    LOGGER.info("mimamo run %s", " ".join(shlex.quote(word) for word in sys.argv[1:]))  # secrets: SecretFilter
    check_weights_and_tables(mimamo)
    if args.watch:  # a daemon: no progress bars, a summary once Ctrl-C has stopped it
        report = run_with_options(PipelineOptions(extra_args, **values))
        print(f"watch stopped: {len(report.videos)} video(s) in {report.batches} batch(es)\n"
              f"frames: {values['output'].rstrip('/')}/{FRAMES_DIR}/\n"
              f"videos: {values['output'].rstrip('/')}/{VIDEOS_DIR}/")
        return EXIT_OK
    counters, committed_before = _run_pipeline(args, extra_args, values)
    print(_summary(counters, values["output"], log_path, committed_before))
    if args.seed_outputs:
        seed_dir = os.path.join(values["output"], SEED_OUTPUTS_DIR)
        plot_command(argparse.Namespace(output=values["output"], video=None, out=seed_dir, csv=True,
                                        annotated_video=False), [])
        print(f"seed outputs: {seed_dir}/")
    return EXIT_SOME_FAILED if _table_count(counters, "videos_failed") else EXIT_OK

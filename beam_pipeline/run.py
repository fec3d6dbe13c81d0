"""Entry point: ``python -m beam_pipeline.run --input VIDEO... --output DIR [options]``.

Every Beam option works too, e.g. ``--runner=PortableRunner --job_endpoint=HOST:PORT``.
"""
import logging
import os
import sys
from typing import List, Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, PortableOptions, StandardOptions

from beam_pipeline.options import MimamoOptions
from beam_pipeline.pipeline import build_pipeline
from beam_pipeline.remote_files import use_anonymous_gcs_for_emulator
from beam_pipeline.watch import watch_inputs

__all__ = ["run", "run_with_options", "configure_logging"]

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


def _undo_output_abbreviation(options: PipelineOptions) -> None:
    """Beam 2.62's option parser accepts abbreviated flags, so ``--output DIR`` also sets ``PortableOptions``'
    ``--output_executable_path`` to DIR, and a Flink or Spark job server then only writes a jar to DIR instead of
    running the job. That option is dropped when it is just ``--output`` again."""
    portable = options.view_as(PortableOptions)
    if portable.output_executable_path and portable.output_executable_path == options.view_as(MimamoOptions).output:
        portable.output_executable_path = None


def _run_once(options: PipelineOptions, test_pipeline: Optional[beam.Pipeline] = None):
    pipeline = test_pipeline if test_pipeline is not None else beam.Pipeline(options=options)
    build_pipeline(pipeline, options)
    result = pipeline.run()
    result.wait_until_finish()
    return result


def run_with_options(options: PipelineOptions, test_pipeline: Optional[beam.Pipeline] = None):
    """Builds the graph on ``test_pipeline`` (or a new pipeline), runs it and waits for it.

    With ``--watch``, keeps running batches on new videos until Ctrl-C instead (``beam_pipeline.watch``).

    Returns:
        The ``PipelineResult`` (metrics in the ``mimamo`` namespace); with ``--watch``, the ``WatchReport``.
    """
    configure_logging(options.view_as(MimamoOptions))
    _undo_output_abbreviation(options)
    _apply_local_workers(options)
    use_anonymous_gcs_for_emulator()
    if options.view_as(MimamoOptions).watch:
        return watch_inputs(options, _run_once)
    return _run_once(options, test_pipeline)


def run(argv: Optional[List[str]] = None, test_pipeline: Optional[beam.Pipeline] = None):
    """Parses ``argv`` (Beam's options and ``MimamoOptions``), runs the pipeline and returns its result."""
    return run_with_options(PipelineOptions(argv), test_pipeline=test_pipeline)


if __name__ == "__main__":
    run(sys.argv[1:])

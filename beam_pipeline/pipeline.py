"""``build_pipeline``: the whole run as a short composition of the public transforms; it never creates or runs a
pipeline. ``python -m beam_pipeline.run`` and ``mimamo run`` build theirs with it.

    input arguments -> MatchVideos -> PredictValenceArousal -> WriteResultTables (frames/, videos/, snippets/)
"""
import logging
from typing import Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.commits import remove_stale_temp_dirs
from beam_pipeline.config import PREDICT_SETTINGS
from beam_pipeline.inputs import InputMatch
from beam_pipeline.matching import MatchVideos
from beam_pipeline.options import MimamoOptions, validate_options
from beam_pipeline.predict import PredictValenceArousal, ValenceArousalResult
from beam_pipeline.sinks import FRAMES_DIR, SNIPPETS_DIR, VIDEOS_DIR, WriteResultTables

__all__ = ["build_pipeline", "check_output_is_fresh", "predict_transform"]

LOGGER = logging.getLogger(__name__)
_SETTING_DESTS = {"runtime": "backbone_runtime"}  # settings whose option has another dest


def predict_transform(options: MimamoOptions) -> PredictValenceArousal:
    """``PredictValenceArousal`` configured from the options (the weights resolved and checked now)."""
    settings = {name: getattr(options, _SETTING_DESTS.get(name, name)) for name in PREDICT_SETTINGS}
    return PredictValenceArousal(progress_dir=options.progress_dir, **settings)


def check_output_is_fresh(output: str) -> None:
    """Refuses an output that already holds tables: stale shards of another run would mix with the new ones.

    (A resumable run checks its output with ``beam_pipeline.resume`` instead, and runs each batch of videos
    into a fresh staging folder.)

    Raises:
        ValueError: ``<output>/frames``, ``videos`` or ``snippets`` already holds Parquet files.
    """
    for table in (FRAMES_DIR, VIDEOS_DIR, SNIPPETS_DIR):
        pattern = FileSystems.join(output, table, "part-*.parquet")
        if FileSystems.match([pattern])[0].metadata_list:
            raise ValueError(f"--output={output!r}: {table}/ already holds Parquet files of an earlier run; "
                             "give a new directory or remove the old results")


def build_pipeline(pipeline: beam.Pipeline, options: PipelineOptions,
                   entries: Optional[Sequence[InputMatch]] = None) -> ValenceArousalResult:
    """Adds the whole MIMAMO-Net run to ``pipeline``: match -> predict -> Parquet tables under ``--output``.

    Options are checked here, while the graph is built (``ValueError`` naming the option and its value).

    Args:
        pipeline: the pipeline to attach to (a ``beam.Pipeline`` or ``TestPipeline``).
        options: every option; read through ``view_as(MimamoOptions)``.
        entries: the inputs already expanded on the launcher (a resumable run's batch), used instead of
            expanding ``--input`` again (``MatchVideos``).

    Returns:
        The rows as written (``frames``: ``FrameRow``; ``videos``: ``VideoRow``, failed matches included).
    """
    mimamo = options.view_as(MimamoOptions)
    validate_options(mimamo)
    check_output_is_fresh(mimamo.output)
    remove_stale_temp_dirs(mimamo.output)  # beam-temp-* folders of a killed run that wrote here directly
    predict = predict_transform(mimamo)
    LOGGER.info("building the pipeline: %d input(s) -> %s", len(mimamo.input), mimamo.output)
    if entries is None:
        matched = pipeline | "CreateInputs" >> beam.Create(list(mimamo.input)) | "MatchVideos" >> MatchVideos(
            mimamo.video_extensions)
    else:
        matched = pipeline | "MatchVideos" >> MatchVideos(mimamo.video_extensions, entries=entries)
    predicted = matched.videos | "PredictValenceArousal" >> predict
    videos = (predicted.videos, matched.failed) | "AddFailedMatches" >> beam.Flatten()
    result = ValenceArousalResult(predicted.frames, videos, predicted.snippets)
    _ = result | "WriteResultTables" >> WriteResultTables(
        mimamo.output, predict.run_metadata(), mimamo.num_shards, snippets=mimamo.keep_intermediates)
    return result

"""``build_pipeline``: the whole run as a short composition of the public transforms; it never creates or runs a
pipeline. ``python -m beam_pipeline.run`` and ``mimamo run`` build theirs with it.

    input arguments -> MatchVideos -> SkipCommittedVideos -> PredictValenceArousal (one VideoResult per video)
        -> CommitVideos (each video under _videos/ as soon as it is done; the videos joined from work units
           through CommitVideosInUnits, as each is joined)
        -> CompactTables (once every video is committed: frames/, videos/, snippets/ from every commit)

The launcher prepares the output first (``beam_pipeline.resume``: the run record, the lock, the committed
videos to skip).
"""
import json
import logging
from typing import AbstractSet, Iterator, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.commits import CommitVideoResults
from beam_pipeline.compaction import CompactTables
from beam_pipeline.config import PREDICT_SETTINGS
from beam_pipeline.inputs import InputMatch
from beam_pipeline.matching import MatchVideos
from beam_pipeline.options import MimamoOptions, identity_options, validate_options
from beam_pipeline.predict import PredictValenceArousal
from beam_pipeline.rows import VideoResult, VideoRow, compute_video_id

__all__ = ["build_pipeline", "predict_transform", "table_metadata"]

LOGGER = logging.getLogger(__name__)
_SETTING_DESTS = {"runtime": "backbone_runtime"}  # settings whose option has another dest


def predict_transform(options: MimamoOptions) -> PredictValenceArousal:
    """``PredictValenceArousal`` configured from the options (the weights resolved and checked now)."""
    settings = {name: getattr(options, _SETTING_DESTS.get(name, name)) for name in PREDICT_SETTINGS}
    return PredictValenceArousal(progress_dir=options.progress_dir, **settings)


def table_metadata(predict: PredictValenceArousal, options: PipelineOptions):
    """Key-value metadata of every table file: the run's (``run_metadata``) and its identity options as
    ``mimamo.options`` (never credentials; the same for every run that resumes it)."""
    return {**predict.run_metadata(),
            "mimamo.options": json.dumps(identity_options(options), sort_keys=True, default=str)}


def _committed_pair(video_id: str) -> Tuple[str, bool]:
    return video_id, True


def _not_committed(uri: str, committed) -> bool:
    return compute_video_id(uri) not in committed


def _row_not_committed(row: VideoRow, committed) -> bool:
    return row.video_id not in committed


def _as_result(row: VideoRow) -> Iterator[VideoResult]:
    yield VideoResult.of_row(row)


def build_pipeline(pipeline: beam.Pipeline, options: PipelineOptions,
                   entries: Optional[Sequence[InputMatch]] = None,
                   committed: AbstractSet[str] = frozenset()) -> beam.PCollection:
    """Adds the whole MIMAMO-Net run to ``pipeline``: match -> predict -> commit each video -> the tables.

    Options are checked here, while the graph is built (``ValueError`` naming the option and its value).

    Args:
        pipeline: the pipeline to attach to (a ``beam.Pipeline`` or ``TestPipeline``).
        options: every option; read through ``view_as(MimamoOptions)``.
        entries: the inputs already expanded on the launcher, used instead of expanding ``--input`` again
            (``MatchVideos``).
        committed: ids of the videos already committed under ``--output`` (``resume.prepare_output``): skipped.

    Returns:
        The ``commits.Committed`` record of every video this run committed.
    """
    mimamo = options.view_as(MimamoOptions)
    validate_options(mimamo)
    predict = predict_transform(mimamo)
    LOGGER.info("building the pipeline: %d input(s) -> %s (%d video(s) already committed)", len(mimamo.input),
                mimamo.output, len(committed))
    if entries is None:
        matched = pipeline | "CreateInputs" >> beam.Create(list(mimamo.input)) | "MatchVideos" >> MatchVideos(
            mimamo.video_extensions)
    else:
        matched = pipeline | "MatchVideos" >> MatchVideos(mimamo.video_extensions, entries=entries)
    committed_ids = beam.pvalue.AsDict(pipeline
                                       | "CreateCommittedIds" >> beam.Create(sorted(committed))
                                       | "KeyCommittedIds" >> beam.Map(_committed_pair))
    pending = matched.videos | "SkipCommittedVideos" >> beam.Filter(_not_committed, committed=committed_ids)
    failed = matched.failed | "SkipCommittedFailures" >> beam.Filter(_row_not_committed, committed=committed_ids)
    # The commit steps follow their producers directly (no Flatten, no shuffle), so each runs fused with them and
    # a video is committed as soon as it is done.
    results = pending | "PredictValenceArousal" >> predict.video_results()
    predicted = results.one_pass | "CommitVideos" >> CommitVideoResults(mimamo.output)
    predicted_in_units = results.in_units | "CommitVideosInUnits" >> CommitVideoResults(mimamo.output)
    failed_matches = (failed
                      | "ToVideoResults" >> beam.FlatMap(_as_result)
                      | "CommitFailedMatches" >> CommitVideoResults(mimamo.output))
    commits = (predicted, predicted_in_units, failed_matches) | "JoinCommits" >> beam.Flatten()
    _ = commits | "CompactTables" >> CompactTables(mimamo.output, table_metadata(predict, options),
                                                   mimamo.num_shards, snippets=mimamo.keep_intermediates)
    return commits

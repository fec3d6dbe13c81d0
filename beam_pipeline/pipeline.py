"""``build_pipeline``: attaches the MIMAMO-Net transforms to a pipeline; it never creates or runs one."""
import logging
from typing import Dict, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.commits import FRAMES_DIR, SNIPPETS_DIR, VIDEOS_DIR, remove_stale_temp_dirs
from beam_pipeline.inputs import InputMatch
from beam_pipeline.options import MimamoOptions, options_as_json, validate_options, worker_processes_per_machine
from beam_pipeline.remote_files import cache_remote_weights, is_remote, resolve_weight_uris, weights_sha256
from beam_pipeline.sinks import FRAMES_SCHEMA, SNIPPETS_SCHEMA, VIDEOS_SCHEMA, WriteRows, WriteTables, with_run_metadata
from beam_pipeline.transforms import MatchVideos, PredictFrames, PredictVideoDoFn, SummariseVideos
from mimamo_ops import __version__
from mimamo_ops.faces.isolation import IsolationConfig
from mimamo_ops.faces.records import FaceConfig
from mimamo_ops.model.checkpoints import BACKBONE, MIMAMO
from mimamo_ops.model.predictor import ModelConfig
from mimamo_ops.weights.standins import describe_weights

__all__ = ["build_pipeline", "check_output_is_fresh", "build_configs", "build_isolation_config", "build_run_metadata",
           "FRAMES_DIR", "VIDEOS_DIR", "SNIPPETS_DIR"]

LOGGER = logging.getLogger(__name__)


def build_configs(options: MimamoOptions) -> Tuple[ModelConfig, FaceConfig]:
    """Resolves the weight files and turns the options into the model and face-stage configs.

    Remote weights (``gs://``, ``s3://``) stay URIs in the config (workers fetch them, ``remote_files``); they
    are fetched and verified here first, so a bad file fails the submission.

    Raises:
        ValueError: an option is out of range (also from the configs' own checks).
        mimamo_ops.errors.CheckpointError: a weights file is missing and not in the user cache.
    """
    checkpoint, backbone = resolve_weight_uris(options.checkpoint, options.backbone)
    model_config = ModelConfig(
        checkpoint_path=checkpoint,
        backbone_path=backbone,
        device=options.device,
        backbone_batch_size=options.compute_batch_size,
        gru_sequence_snippets=options.gru_sequence_snippets,
        snippet_length=options.length,
        snippet_stride=options.stride,
        num_phase=options.num_phase,
        phase_size=options.phase_size,
        pyramid_height=options.height,
        nbands=options.nbands,
        scale_factor=options.scale_factor,
        precision=options.precision,
        runtime=options.backbone_runtime,
        threads_per_worker=options.threads_per_worker,
        worker_processes=worker_processes_per_machine(options),
    )
    face_config = FaceConfig(
        backend=options.face_backend,
        device=options.device,
        runtime=options.backbone_runtime,
        multi_face=options.multi_face,
        face_size=options.face_size,
        mask=options.mask,
        openface_path=options.openface_path,
    )
    return model_config, face_config


def build_isolation_config(options: MimamoOptions) -> IsolationConfig:
    """How the face stage of each video is guarded: a supervised child process unless --face_stage_in_process,
    with the frame-size limit, memory budget and stall timeout of the options."""
    return IsolationConfig(
        enabled=not options.face_stage_in_process,
        max_frame_pixels=options.max_frame_pixels,
        video_memory_budget_mb=options.video_memory_budget_mb,
        stall_timeout_s=options.stall_timeout_s,
    )


def build_run_metadata(options: PipelineOptions, model_config: ModelConfig) -> Dict[str, str]:
    """Key-value metadata written into every Parquet file: package version, weights (stand-in or not) and their
    SHA-256s, options."""
    checkpoint = model_config.checkpoint_path
    local_checkpoint = cache_remote_weights(checkpoint, MIMAMO)[0] if is_remote(checkpoint) else checkpoint
    return {
        "mimamo.version": __version__,
        "mimamo.weights": describe_weights(local_checkpoint),
        "mimamo.checkpoint": model_config.checkpoint_path,
        "mimamo.checkpoint_sha256": weights_sha256(model_config.checkpoint_path, MIMAMO),
        "mimamo.backbone": model_config.backbone_path,
        "mimamo.backbone_sha256": weights_sha256(model_config.backbone_path, BACKBONE),
        "mimamo.options": options_as_json(options),
    }


def check_output_is_fresh(output: str) -> None:
    """Refuses an output that already holds tables: stale shards of another run would mix with the new ones.

    (A resumable run checks its output with ``beam_pipeline.resume`` instead, and runs each batch of videos
    into a fresh staging folder.)

    Raises:
        ValueError: ``<output>/frames`` or ``<output>/videos`` already holds Parquet files.
    """
    for table in (FRAMES_DIR, VIDEOS_DIR, SNIPPETS_DIR):
        pattern = FileSystems.join(output, table, "part-*.parquet")
        if FileSystems.match([pattern])[0].metadata_list:
            raise ValueError(f"--output={output!r}: {table}/ already holds Parquet files of an earlier run; "
                             "give a new directory or remove the old results")


def build_pipeline(pipeline: beam.Pipeline, options: PipelineOptions,
                   entries: Optional[Sequence[InputMatch]] = None) -> None:
    """Adds the whole MIMAMO-Net graph to ``pipeline``: match -> predict -> assemble -> Parquet sinks.

    Options are checked here, while the graph is built (``ValueError`` naming the option and its value).

    Args:
        pipeline: the pipeline to attach to (a ``beam.Pipeline`` or ``TestPipeline``).
        options: every option; read through ``view_as(MimamoOptions)``.
        entries: the inputs already expanded on the launcher (a resumable run's batch), used instead of
            expanding ``--input`` again (``MatchVideos``).
    """
    mimamo = options.view_as(MimamoOptions)
    validate_options(mimamo)
    check_output_is_fresh(mimamo.output)
    remove_stale_temp_dirs(mimamo.output)  # beam-temp-* folders of a killed run that wrote here directly
    model_config, face_config = build_configs(mimamo)
    metadata = build_run_metadata(options, model_config)
    LOGGER.info("building the pipeline: %d input(s) -> %s", len(mimamo.input), mimamo.output)

    matched = pipeline | "MatchVideos" >> MatchVideos(mimamo.input, tuple(mimamo.video_extensions), entries)
    predict_fn = PredictVideoDoFn(
        model_config, face_config, progress_dir=mimamo.progress_dir, keep_snippet_rows=mimamo.keep_intermediates,
        isolation=build_isolation_config(mimamo),
    )
    predicted = matched["videos"] | "PredictFrames" >> PredictFrames(predict_fn, mimamo.smoothing_size)
    summaries = (predicted["videos"], matched["failed"]) | "MergeSummaries" >> beam.Flatten()
    video_rows = (summaries, predicted["track_stats"]) | "SummariseVideos" >> SummariseVideos()

    output = mimamo.output
    _ = predicted["frames"] | "WriteFrames" >> WriteTables(
        FileSystems.join(output, FRAMES_DIR), with_run_metadata(FRAMES_SCHEMA, metadata), mimamo.num_shards
    )
    _ = video_rows | "WriteVideos" >> WriteRows(
        FileSystems.join(output, VIDEOS_DIR), with_run_metadata(VIDEOS_SCHEMA, metadata), mimamo.num_shards
    )
    if mimamo.keep_intermediates:
        _ = predicted["snippet_rows"] | "WriteSnippets" >> WriteTables(
            FileSystems.join(output, SNIPPETS_DIR), with_run_metadata(SNIPPETS_SCHEMA, metadata), mimamo.num_shards
        )

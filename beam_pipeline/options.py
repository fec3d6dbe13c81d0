"""Pipeline options: every option of the seed's CLI (spec section 11.1) as a ``PipelineOptions`` group.

The flags themselves are declared in ``beam_pipeline.flags`` (no Beam import, for a quick ``mimamo run --help``).

The seed's names are kept where they still mean the same thing. ``--batch_size`` is kept as an alias of
``--gru_sequence_snippets`` because in the seed it set how many consecutive snippets share one GRU sequence (spec
4.4), which changes the numbers; the compute batch that never changes them is ``--compute_batch_size``.
"""
import argparse
import json
import re
from typing import Any, Dict, List, Sequence

from apache_beam.options.pipeline_options import (
    DebugOptions,
    DirectOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
)

from beam_pipeline.flags import (FIXED_BY_CHECKPOINT, MAX_PYRAMID_HEIGHT, MIN_PYRAMID_HEIGHT, add_mimamo_arguments,
                                 mimamo_option_names)

__all__ = ["EXECUTION_ONLY_OPTIONS", "SDK_ENVIRONMENT_CACHE_MS", "MimamoOptions", "identity_options",
           "is_secret_option", "keep_sdk_environments", "options_as_json", "recordable_options",
           "redact_secrets", "secret_option_values", "secret_values", "validate_options",
           "worker_processes_per_machine"]

# MIMAMO options that change how a run executes, never its rows: a run may be resumed with other values.
EXECUTION_ONLY_OPTIONS = frozenset({
    "progress_dir", "log", "logdir", "n_workers", "videos_per_commit", "watch", "watch_interval",
    "watch_batch_size", "video_disk_budget_mb", "work_unit_s", "backbone_sharing",
})


class MimamoOptions(PipelineOptions):
    """Options of the MIMAMO-Net pipeline (``view_as(MimamoOptions)``); Beam's own options live beside them."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        add_mimamo_arguments(parser)


def validate_options(options: MimamoOptions, require_io: bool = True, prefix: str = "--") -> None:
    """Checks the options while the graph is built, before any worker starts.

    Args:
        options: the pipeline's options, viewed as ``MimamoOptions`` (or a namespace with the same names).
        require_io: whether ``--input`` and ``--output`` must be set.
        prefix: put before the option's name in messages: ``--`` for flags, ``""`` for a transform's keyword
            arguments (``length=0: must be >= 1``).

    Raises:
        ValueError: an option has an unusable value; the message names the option and the value.
    """
    def _require(condition: bool, option: str, value: Any, expected: str) -> None:
        if not condition:
            raise ValueError(f"{prefix}{option}={value!r}: {expected}")

    if require_io:
        _require(bool(options.input), "input", options.input, "give at least one video, directory, glob or list")
        _require(bool(options.output), "output", options.output, "an output directory is required")
    for name, fixed in FIXED_BY_CHECKPOINT.items():
        value = getattr(options, name)
        _require(value == fixed, name, value, f"must be {fixed!r}, the value the checkpoint was trained with")
    _require(
        MIN_PYRAMID_HEIGHT <= options.height <= MAX_PYRAMID_HEIGHT, "height", options.height,
        f"must be in [{MIN_PYRAMID_HEIGHT}, {MAX_PYRAMID_HEIGHT}]",
    )
    _require(options.length >= 1, "length", options.length, "must be >= 1")
    _require(1 <= options.stride <= options.length, "stride", options.stride, "must be in [1, --length]")
    _require(options.gru_sequence_snippets >= 1, "gru_sequence_snippets", options.gru_sequence_snippets,
             "must be >= 1")
    _require(options.compute_batch_size >= 0, "compute_batch_size", options.compute_batch_size,
             "must be >= 0 (0: automatic)")
    _require(options.n_workers is None or options.n_workers >= 1, "n_workers", options.n_workers, "must be >= 1")
    _require(options.threads_per_worker >= 0, "threads_per_worker", options.threads_per_worker,
             "must be >= 0 (0: automatic)")
    _require(options.face_size >= 16, "face_size", options.face_size, "must be >= 16 pixels")
    _require(options.max_frame_pixels >= 1, "max_frame_pixels", options.max_frame_pixels, "must be >= 1 pixel")
    _require(options.video_disk_budget_mb is None or options.video_disk_budget_mb >= 0, "video_disk_budget_mb",
             options.video_disk_budget_mb, "must be >= 0 MB")
    _require(options.work_unit_s >= 0, "work_unit_s", options.work_unit_s, "must be >= 0 seconds (0: never split)")
    _require(options.video_memory_budget_mb >= 1, "video_memory_budget_mb", options.video_memory_budget_mb,
             "must be >= 1 MB")
    _require(options.stall_timeout_s > 0, "stall_timeout_s", options.stall_timeout_s, "must be > 0 seconds")
    _require(options.num_shards >= 0, "num_shards", options.num_shards, "must be >= 0")
    _require(options.smoothing_size is None or options.smoothing_size >= 0, "smoothing_size",
             options.smoothing_size, "must be >= 0 seconds")
    _require(options.watch_interval > 0, "watch_interval", options.watch_interval, "must be > 0 seconds")
    _require(options.watch_batch_size >= 1, "watch_batch_size", options.watch_batch_size, "must be >= 1")
    _require(bool(options.video_extensions), "video_extensions", options.video_extensions, "give one or more")
    for extension in options.video_extensions:
        _require(extension.startswith(".") and len(extension) > 1, "video_extensions", extension,
                 "each extension must start with '.'")


# Options never written anywhere (Parquet metadata, _run.json, logs): credentials. Beam's S3 keys and session
# token, Azure's connection string, and anything named like a key, secret, token, password or credential.
_SECRET_NAME = re.compile(r"key|secret|token|password|passwd|credential|connection_string", re.IGNORECASE)


def is_secret_option(name: str) -> bool:
    """Whether an option holds a credential by its name (``s3_secret_access_key``, ``s3_session_token``, ...)."""
    return bool(_SECRET_NAME.search(name))


def recordable_options(options: PipelineOptions) -> Dict[str, Any]:
    """Every option (Beam's and ours) except credentials (``is_secret_option``), by name."""
    all_options = options.get_all_options(drop_default=False, retain_unknown_options=True)
    return {name: value for name, value in all_options.items() if not is_secret_option(name)}


def options_as_json(options: PipelineOptions) -> str:
    """Every option but credentials (``recordable_options``) as sorted JSON, for the Parquet key-value metadata."""
    return json.dumps(recordable_options(options), sort_keys=True, default=str)


def identity_options(options: PipelineOptions) -> Dict[str, Any]:
    """The options that identify a run's rows: every MIMAMO option but ``--output`` and those in
    ``EXECUTION_ONLY_OPTIONS``, never credentials. Beam's own options (runner, machines, parallelism) are left
    out: they change where and how fast a run goes, not its rows, so a run may be resumed on another runner."""
    values = recordable_options(options)
    return {name: values.get(name) for name in mimamo_option_names()
            if name not in EXECUTION_ONLY_OPTIONS and name != "output" and not is_secret_option(name)}


def secret_values(argv: Sequence[str]) -> List[str]:
    """The values given to credential options (``is_secret_option``) in a command line, as ``--name value`` or
    ``--name=value``, for ``redact_secrets``."""
    found = []
    for index, word in enumerate(argv):
        if not word.startswith("--"):
            continue
        name, equals, value = word[2:].partition("=")
        if not is_secret_option(name.replace("-", "_")):
            continue
        if equals:
            found.append(value)
        elif index + 1 < len(argv):
            found.append(argv[index + 1])
    return [value for value in found if value]


def secret_option_values(options: PipelineOptions) -> List[str]:
    """The values of every credential option set in ``options`` (``is_secret_option``), for ``redact_secrets``."""
    all_options = options.get_all_options(drop_default=True, retain_unknown_options=True)
    return [str(value) for name, value in all_options.items() if is_secret_option(name) and value]


def redact_secrets(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _runner_name(options: PipelineOptions) -> str:
    """The runner's class name in lower case (``"sparkrunner"``, ``"flink"``, ``"directrunner"`` when unset)."""
    runner = options.view_as(StandardOptions).runner
    runner_name = (runner if isinstance(runner, str) else type(runner).__name__ if runner else "DirectRunner")
    return runner_name.rsplit(".", 1)[-1].lower()


def worker_processes_per_machine(options: PipelineOptions) -> int:
    """How many pipeline processes the runner starts on each machine, as far as the options tell.

    DirectRunner: ``--direct_num_workers`` in multi_processing mode (0 there means one per CPU), else 1.
    Portable runners (Flink, Spark, PortableRunner): ``--sdk_worker_parallelism`` (0, the runner's choice, is
    taken as one per CPU). Dataflow: one SDK process per vCPU unless the ``no_use_multiple_sdk_containers``
    experiment is set. Other runners: 1.

    Returns:
        Processes per machine, or 0 for "one per CPU" (see ``ModelConfig.worker_processes``).
    """
    runner_name = _runner_name(options)
    if runner_name in ("directrunner", "direct", "switchingdirectrunner", "bundlebasedirectrunner"):
        direct = options.view_as(DirectOptions)
        if direct.direct_running_mode != "multi_processing":
            return 1
        return int(direct.direct_num_workers or 0)
    if runner_name in ("dataflowrunner", "dataflow"):
        experiments = options.view_as(DebugOptions).experiments or []
        return 1 if "no_use_multiple_sdk_containers" in experiments else 0
    if runner_name in ("portablerunner", "flinkrunner", "sparkrunner", "prismrunner", "portable", "flink",
                       "spark", "prism"):
        return int(options.view_as(PortableOptions).sdk_worker_parallelism or 0)
    return 1


# How long Beam's Spark and Flink runners keep a job's idle SDK environment for its next task when
# --environment_cache_millis is left at Beam's 0. With 0 they start a fresh SDK process for every task (Spark) or
# every scheduling region (Flink), each importing Beam and loading the models in setup() again. Measured on the
# seven inputs of tests/cluster (docs/clusters.md): Spark 23 SDK processes -> 2, pipeline 152 s -> 65 s; Flink
# 7 SDK processes per TaskManager -> 1, pipeline 106 s -> 56 s. Flink's runner honours the delay only when Beam's
# classes come from the TaskManager's own class path (``cluster.local.flink_cluster``); with them in the job's
# jar it closes each environment at once, with or without the option.
SDK_ENVIRONMENT_CACHE_MS = 60_000
_CACHING_RUNNERS = ("sparkrunner", "spark", "flinkrunner", "flink")


def keep_sdk_environments(options: PipelineOptions) -> None:
    """On the SparkRunner and the FlinkRunner, sets ``--environment_cache_millis`` to ``SDK_ENVIRONMENT_CACHE_MS``
    when it is not given (Beam's default is 0, no caching). A value given on the command line, 0 included, is
    kept: Beam parses the flag as text, so a given "0" is not the default's 0.

    Not with ``--environment_type=LOOPBACK``: there the SDK harness runs in this process, so no process is started
    per task.

    ``run_with_options`` (``mimamo run``, ``python -m beam_pipeline.run``) calls it; a pipeline of a user's own
    sets the option itself.
    """
    portable = options.view_as(PortableOptions)
    loopback = (portable.environment_type or "").upper() == "LOOPBACK"
    if _runner_name(options) in _CACHING_RUNNERS and not loopback and not portable.environment_cache_millis:
        portable.environment_cache_millis = SDK_ENVIRONMENT_CACHE_MS

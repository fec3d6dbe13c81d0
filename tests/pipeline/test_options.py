"""MimamoOptions: every seed option has an equivalent, and bad values fail while the graph is built."""
import argparse
import json
import logging

import pytest
from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions

from beam_pipeline.inputs import DEFAULT_VIDEO_EXTENSIONS
from beam_pipeline.options import (SDK_ENVIRONMENT_CACHE_MS, MimamoOptions, identity_options,
                                   keep_sdk_environments, options_as_json, secret_option_values,
                                   secret_values, validate_options)
from beam_pipeline.run import SecretFilter

BASE = ["--input", "a.mp4", "--output", "out"]


def parse(*flags: str) -> MimamoOptions:
    return PipelineOptions(list(BASE) + list(flags)).view_as(MimamoOptions)


def test_defaults_match_the_seed_and_the_reference_run():
    options = parse()
    assert options.input == ["a.mp4"]
    assert options.output == "out"
    assert (options.num_phase, options.phase_size, options.length, options.stride) == (12, 48, 64, 64)
    assert (options.height, options.nbands, options.scale_factor) == (4, 2, 2.0)
    assert (options.face_size, options.mask, options.multi_face) == (112, False, False)
    assert options.device == "cpu"
    assert options.gru_sequence_snippets == 64 and options.compute_batch_size == 0
    assert options.smoothing_size is None
    assert options.video_extensions == list(DEFAULT_VIDEO_EXTENSIONS)
    validate_options(options)


def test_every_seed_option_has_an_equivalent():
    options = parse(
        "--checkpoint", "m.pth.tar", "--smoothing_size", "0.5", "--batch_size", "4", "--n_workers", "2",
        "--device", "cuda:0", "--openface_path", "/of/bin", "--multi_face", "--face_size", "224", "--mask",
        "--backbone", "r.pth", "--model_name", "resnet50_ferplus_dag", "--feature_layer", "pool5_7x7_s1",
        "--num_phase", "12", "--phase_size", "48", "--length", "32", "--stride", "16", "--height", "4",
        "--nbands", "2", "--scale_factor", "2", "--log", "--logdir", "/tmp/logs", "--keep_intermediates",
        "--video_extensions", ".mp4,.MOV",
    )
    assert options.checkpoint == "m.pth.tar" and options.backbone == "r.pth"
    assert options.smoothing_size == 0.5
    assert options.gru_sequence_snippets == 4  # --batch_size is the seed's name for it
    assert options.n_workers == 2 and options.device == "cuda:0"
    assert options.openface_path == "/of/bin" and options.multi_face and options.face_size == 224 and options.mask
    assert (options.length, options.stride) == (32, 16)
    assert options.log and options.logdir == "/tmp/logs" and options.keep_intermediates
    assert options.video_extensions == [".mp4", ".MOV"]
    validate_options(options)


def test_repeated_input_flags_accumulate():
    options = PipelineOptions(["--input", "a", "--input", "b/", "--output", "o"]).view_as(MimamoOptions)
    assert options.input == ["a", "b/"]


@pytest.mark.parametrize(
    "flag, value",
    [
        ("nbands", "4"),
        ("num_phase", "8"),
        ("phase_size", "64"),
        ("scale_factor", "1.5"),
        ("feature_layer", "conv5_3"),
        ("model_name", "resnet18"),
        ("height", "6"),
        ("length", "0"),
        ("stride", "65"),
        ("compute_batch_size", "-1"),
        ("gru_sequence_snippets", "0"),
        ("smoothing_size", "-1"),
        ("video_extensions", "mp4"),
        ("face_size", "8"),
        ("n_workers", "0"),
        ("max_frame_pixels", "0"),
        ("video_memory_budget_mb", "0"),
        ("stall_timeout_s", "0"),
        ("video_disk_budget_mb", "-1"),
    ],
)
def test_bad_value_raises_value_error_naming_option_and_value(flag, value):
    options = parse(f"--{flag}", value)
    with pytest.raises(ValueError, match=f"--{flag}=.*{value.lstrip('.')}"):
        validate_options(options)


def test_missing_input_or_output_raises():
    with pytest.raises(ValueError, match="--input"):
        validate_options(PipelineOptions(["--output", "o"]).view_as(MimamoOptions))
    with pytest.raises(ValueError, match="--output"):
        validate_options(PipelineOptions(["--input", "a.mp4"]).view_as(MimamoOptions))


def test_options_json_holds_beam_and_mimamo_options():
    options = PipelineOptions(BASE + ["--smoothing_size", "0.5", "--runner", "DirectRunner"])
    decoded = json.loads(options_as_json(options))
    assert decoded["smoothing_size"] == 0.5
    assert decoded["runner"] == "DirectRunner"
    assert decoded["input"] == ["a.mp4"]


@pytest.mark.parametrize(
    "flags, processes",
    [
        ([], 1),
        (["--direct_num_workers", "4"], 1),  # multi_threading: one process
        (["--direct_num_workers", "4", "--direct_running_mode", "multi_processing"], 4),
        (["--runner", "PortableRunner", "--sdk_worker_parallelism", "3"], 3),
        (["--runner", "FlinkRunner", "--sdk_worker_parallelism", "0"], 0),  # the runner's choice: one per CPU
        (["--runner", "DataflowRunner"], 0),  # one SDK process per vCPU
        (["--runner", "DataflowRunner", "--experiments", "no_use_multiple_sdk_containers"], 1),
    ],
)
def test_worker_processes_per_machine_follows_the_runner(flags, processes):
    from beam_pipeline.options import worker_processes_per_machine

    assert worker_processes_per_machine(PipelineOptions(flags)) == processes


@pytest.mark.parametrize(
    "flags, cache_ms",
    [
        (["--runner", "SparkRunner"], SDK_ENVIRONMENT_CACHE_MS),
        (["--runner", "SparkRunner", "--environment_type", "EXTERNAL"], SDK_ENVIRONMENT_CACHE_MS),
        (["--runner", "SparkRunner", "--environment_cache_millis", "5"], "5"),  # given: kept (Beam keeps the text)
        (["--runner", "SparkRunner", "--environment_cache_millis", "0"], "0"),  # given, even 0: kept
        (["--runner", "SparkRunner", "--environment_type", "LOOPBACK"], 0),  # the harness is the launcher
        (["--runner", "FlinkRunner", "--environment_type", "EXTERNAL"], SDK_ENVIRONMENT_CACHE_MS),
        (["--runner", "FlinkRunner", "--environment_cache_millis", "0"], "0"),
        (["--runner", "FlinkRunner", "--environment_type", "LOOPBACK"], 0),
        (["--runner", "DataflowRunner"], 0),
        ([], 0),
    ],
)
def test_spark_and_flink_jobs_keep_their_sdk_environments_between_tasks(flags, cache_ms):
    options = PipelineOptions(flags)
    keep_sdk_environments(options)
    assert options.view_as(PortableOptions).environment_cache_millis == cache_ms


def test_runtime_and_threads_options_default_to_automatic_and_are_checked():
    options = PipelineOptions([]).view_as(MimamoOptions)
    assert (options.backbone_runtime, options.threads_per_worker) == ("auto", 0)
    assert PipelineOptions(["--runtime", "torch"]).view_as(MimamoOptions).backbone_runtime == "torch"
    bad = PipelineOptions(["--input", "a.mp4", "--output", "out", "--threads_per_worker", "-1"])
    with pytest.raises(ValueError, match="--threads_per_worker=-1"):
        validate_options(bad.view_as(MimamoOptions))


def test_fault_isolation_options_default_to_an_isolated_face_stage_and_reach_its_config():
    from beam_pipeline.config import isolation_config_from
    from mimamo_ops.faces.isolation import IsolationConfig

    assert isolation_config_from(parse()) == IsolationConfig()
    assert isolation_config_from(parse("--max_frame_pixels", "100", "--video_memory_budget_mb", "50",
                                        "--stall_timeout_s", "2.5", "--face_stage_in_process")) == IsolationConfig(
        enabled=False, max_frame_pixels=100, video_memory_budget_mb=50, stall_timeout_s=2.5)


def test_the_disk_budget_is_none_by_default_and_given_in_mib():
    from beam_pipeline.config import video_disk_budget_bytes

    assert video_disk_budget_bytes(parse()) is None
    assert video_disk_budget_bytes(parse("--video_disk_budget_mb", "0.5")) == 1 << 19
    assert video_disk_budget_bytes(parse("--video_disk_budget_mb", "0")) == 0


def _parser_actions(options_class) -> list:
    parser = argparse.ArgumentParser()
    options_class._add_argparse_args(parser)  # pylint: disable=protected-access
    return parser._actions  # pylint: disable=protected-access


def test_no_option_abbreviates_a_beam_flag():
    """Beam's option parser accepts abbreviations, and SDK workers get the options as ``--<dest>=value`` and parse
    them without ours: an option of ours whose name begins a Beam flag would set that flag there
    (``--runtime=auto`` stopped every multi_processing worker as ``--runtime_type_check=auto``; the option is
    ``backbone_runtime`` now, ``--runtime`` an alias the launcher matches exactly). ``--output`` is the one
    known case, undone in ``beam_pipeline.run`` and harmless in workers (a string option)."""
    beam_flags = {flag for options_class in PipelineOptions.__subclasses__() if options_class is not MimamoOptions
                  for action in _parser_actions(options_class) for flag in action.option_strings}
    ours = {f"--{action.dest}" for action in _parser_actions(MimamoOptions) if action.option_strings}
    clashes = {flag: sorted(other for other in beam_flags if other != flag and other.startswith(flag))
               for flag in ours}
    assert {flag: others for flag, others in clashes.items() if others} == {"--output": ["--output_executable_path"]}


def test_a_run_is_identified_by_its_mimamo_options_not_by_how_or_where_it_runs():
    base = identity_options(PipelineOptions(BASE + ["--length", "16"]))
    elsewhere = identity_options(PipelineOptions(
        ["--input", "a.mp4", "--output", "gs://b/out/", "--length", "16", "--runner=FlinkRunner", "--parallelism=2",
         "--n_workers", "3", "--videos_per_commit", "1", "--log", "--s3_secret_access_key", "S3CR3T"]))
    assert base == elsewhere and base["length"] == 16 and base["input"] == ["a.mp4"]
    assert "output" not in base and "runner" not in base
    assert identity_options(PipelineOptions(BASE + ["--length", "32"])) != base


def test_credentials_are_found_on_a_command_line_and_redacted_from_log_records():
    argv = ["run", "x", "--s3_secret_access_key", "S3CR3T", "--s3_session_token=T0KEN", "--s3_access_key_id",
            "AKIDX", "--length", "16"]
    found = secret_values(argv)
    assert sorted(found) == ["AKIDX", "S3CR3T", "T0KEN"]
    record = logging.LogRecord("apache_beam", logging.INFO, __file__, 1, "options %s", (argv,), None)
    assert SecretFilter(found).filter(record)
    assert "S3CR3T" not in record.getMessage() and "T0KEN" not in record.getMessage()
    assert "--s3_secret_access_key', '***'" in record.getMessage()
    assert sorted(secret_option_values(PipelineOptions(argv[2:]))) == ["AKIDX", "S3CR3T", "T0KEN"]

"""The pipeline on a real Flink 1.19 cluster on 127.0.0.1 (``cluster.local.flink_cluster``), through Beam's
Flink job server (``--runner=FlinkRunner --flink_master=...``, the jar built by ``cluster.prepare``).

Two environments: EXTERNAL worker pools beside each TaskManager, as on Kubernetes, with the weights as
``gs://`` URIs on the Cloud Storage emulator; and LOOPBACK, the SDK harness in this process. Each run's rows must
equal the DirectRunner's on the same clips.
"""
from tests.cluster import engine_checks
from tests.cluster.conftest import COPIES, read_probe
from tests.cluster.engine_checks import ALL_CLIPS
from tests.pipeline.test_pipeline import pipeline_flags


def flink_flags(running, jar) -> list:
    return ["--runner=FlinkRunner", f"--flink_master={running.cluster.flink_master}", "--flink_version=1.19",
            f"--flink_job_server_jar={jar}", "--parallelism=2"]


def test_flink_with_worker_pools_gives_the_direct_runners_rows_from_two_taskmanagers_at_once(
        flink, clip_folder, copies_folder, remote_weights, direct_rows, tmp_path):
    output = tmp_path / "out"
    copies = {str(copies_folder / name): str(clip_folder / "one_face.mp4") for name in COPIES}
    result = engine_checks.run_and_time(
        "flink external", pipeline_flags(clip_folder, remote_weights, output) + ["--input", str(copies_folder)]
        + flink_flags(flink, flink.files.flink_job_server_jar)
        + ["--environment_type=EXTERNAL", f"--environment_config={flink.cluster.environment_config}"])
    engine_checks.assert_rows_match(direct_rows, output, copies)
    engine_checks.assert_counters(result, output, copies=len(copies))
    records = read_probe(flink.probe_dir)
    engine_checks.assert_parallel_on_two_workers([record for record in records if record["event"] == "video"],
                                                ALL_CLIPS + COPIES)
    engine_checks.assert_weights_fetched_once_per_process(records, remote_weights)
    assert flink.cluster.overview()["jobs-finished"] >= 1


def test_flink_loopback_gives_the_direct_runners_rows(flink, clip_folder, synthetic_weights,
                                                      direct_rows, tmp_path):
    output = tmp_path / "out"
    result = engine_checks.run_and_time(
        "flink loopback", pipeline_flags(clip_folder, synthetic_weights, output)
        + flink_flags(flink, flink.files.flink_job_server_jar) + ["--environment_type=LOOPBACK"])
    engine_checks.assert_rows_match(direct_rows, output)
    engine_checks.assert_counters(result, output)

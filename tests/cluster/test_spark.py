"""The pipeline on a real Spark 3.5 standalone cluster on 127.0.0.1 (``cluster.local.spark_cluster``), through
Beam's Spark job server (``--runner=SparkRunner --spark_master_url=spark://...``, built by ``cluster.prepare``).

As on Flink: EXTERNAL worker pools beside each Spark worker with ``gs://`` weights, and LOOPBACK; the rows must
equal the DirectRunner's.
"""
from cluster.local import SPARK_DRIVER_JAVA_OPTIONS
from tests.cluster import engine_checks
from tests.cluster.conftest import COPIES, read_probe
from tests.cluster.engine_checks import ALL_CLIPS
from tests.pipeline.test_pipeline import pipeline_flags


def spark_flags(running, jar) -> list:
    return (["--runner=SparkRunner", f"--spark_master_url={running.cluster.master_url}", "--spark_version=3",
             f"--spark_job_server_jar={jar}"]
            + [f"--job_server_jvm_property={option}" for option in SPARK_DRIVER_JAVA_OPTIONS])


def test_spark_with_worker_pools_gives_the_direct_runners_rows_from_two_workers_at_once(
        spark, clip_folder, copies_folder, remote_weights, direct_rows, tmp_path):
    output = tmp_path / "out"
    copies = {str(copies_folder / name): str(clip_folder / "one_face.mp4") for name in COPIES}
    result = engine_checks.run_and_time(
        "spark external", pipeline_flags(clip_folder, remote_weights, output) + ["--input", str(copies_folder)]
        + spark_flags(spark, spark.files.spark_job_server_jar)
        + ["--environment_type=EXTERNAL", f"--environment_config={spark.cluster.environment_config}"])
    engine_checks.assert_rows_match(direct_rows, output, copies)
    engine_checks.assert_counters(result, output, copies=len(copies))
    records = read_probe(spark.probe_dir)
    engine_checks.assert_parallel_on_two_workers([record for record in records if record["event"] == "video"],
                                                ALL_CLIPS + COPIES)
    engine_checks.assert_weights_fetched_once_per_process(records, remote_weights)
    assert spark.cluster.state()["completedapps"], "the job did not run as an application of this master"


def test_spark_loopback_gives_the_direct_runners_rows(spark, clip_folder, synthetic_weights,
                                                      direct_rows, tmp_path):
    output = tmp_path / "out"
    result = engine_checks.run_and_time(
        "spark loopback", pipeline_flags(clip_folder, synthetic_weights, output)
        + spark_flags(spark, spark.files.spark_job_server_jar) + ["--environment_type=LOOPBACK"])
    engine_checks.assert_rows_match(direct_rows, output)
    engine_checks.assert_counters(result, output)

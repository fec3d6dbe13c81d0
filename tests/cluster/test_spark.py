"""The pipeline on a real Spark 3.5 standalone cluster on 127.0.0.1 (``cluster.local.spark_cluster``), through
Beam's Spark job server (``--runner=SparkRunner --spark_master_url=spark://...``, built by ``cluster.prepare``).

As on Flink: EXTERNAL worker pools beside each Spark worker with ``gs://`` weights, and LOOPBACK; the rows must
equal the DirectRunner's.
"""
from cluster.local import SHORT_LIVED_JVM_OPTIONS, SPARK_DRIVER_JAVA_OPTIONS
from tests.cluster import engine_checks


def spark_flags(running) -> list:
    return (["--runner=SparkRunner", f"--spark_master_url={running.cluster.master_url}", "--spark_version=3",
             f"--spark_job_server_jar={running.files.spark_job_server_jar}"]
            + [f"--job_server_jvm_property={option}" for option in SPARK_DRIVER_JAVA_OPTIONS + SHORT_LIVED_JVM_OPTIONS])


def test_spark_with_worker_pools_gives_the_direct_runners_rows_from_two_workers_at_once(
        spark, clip_folder, copies_folder, remote_weights, direct_rows, tmp_path):
    engine_checks.check_worker_pools_run("spark external", spark, spark_flags(spark), clip_folder, copies_folder,
                                         remote_weights, direct_rows, tmp_path / "out", sdk_processes_per_pool=1)
    assert spark.cluster.state()["completedapps"], "the job did not run as an application of this master"


def test_spark_loopback_gives_the_direct_runners_rows(spark, clip_folder, synthetic_weights,
                                                      direct_rows, tmp_path):
    engine_checks.check_loopback_run("spark loopback", spark_flags(spark), clip_folder, synthetic_weights,
                                     direct_rows, tmp_path / "out")

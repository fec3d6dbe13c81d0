"""The pipeline on a real Flink 1.19 cluster on 127.0.0.1 (``cluster.local.flink_cluster``), through Beam's
Flink job server (``--runner=FlinkRunner --flink_master=...``, the jar built by ``cluster.prepare``).

Here: EXTERNAL worker pools beside each TaskManager, as on Kubernetes, with the weights as ``gs://`` URIs on the
Cloud Storage emulator; the run's rows must equal the DirectRunner's on the same clips, and each TaskManager
keeps one SDK process for the whole job (Beam's runner is on the TaskManagers' class path, ``flink_cluster``).
LOOPBACK (the SDK harness in the launching process) is the environment of ``test_flink_faults``, whose good
videos' rows must equal a clean local run's; ``test_flink_resume`` runs the worker pools again through two kills.
"""
from cluster.local import SHORT_LIVED_JVM_OPTIONS
from tests.cluster import engine_checks


def flink_flags(running) -> list:
    return (["--runner=FlinkRunner", f"--flink_master={running.cluster.flink_master}", "--flink_version=1.19",
             f"--flink_job_server_jar={running.files.flink_job_server_jar}", "--parallelism=2"]
            + [f"--job_server_jvm_property={option}" for option in SHORT_LIVED_JVM_OPTIONS])


def test_flink_with_worker_pools_gives_the_direct_runners_rows_from_two_taskmanagers_at_once(
        flink, clip_folder, copies_folder, remote_weights, direct_rows, tmp_path):
    engine_checks.check_worker_pools_run("flink external", flink, flink_flags(flink), clip_folder, copies_folder,
                                         remote_weights, direct_rows, tmp_path / "out", sdk_processes_per_pool=1)
    assert flink.cluster.overview()["jobs-finished"] >= 1


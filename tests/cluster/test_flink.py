"""The pipeline on a real Flink 1.19 cluster on 127.0.0.1 (``cluster.local.flink_cluster``), through Beam's
Flink job server (``--runner=FlinkRunner --flink_master=...``, the jar built by ``cluster.prepare``).

Here: EXTERNAL worker pools beside each TaskManager, as on Kubernetes, with the weights as ``gs://`` URIs on the
Cloud Storage emulator; the run's rows must equal the DirectRunner's on the same clips, and each TaskManager
keeps one SDK process for the whole job (Beam's runner is on the TaskManagers' class path, ``flink_cluster``).
One long video in work units has units encoded on both TaskManagers at once, with the unsplit run's rows.
LOOPBACK (the SDK harness in the launching process) is the environment of ``test_flink_faults``, whose good
videos' rows must equal a clean local run's; ``test_flink_resume`` runs the worker pools again through two kills.
"""
from beam_pipeline.run import run
from cluster.local import SHORT_LIVED_JVM_OPTIONS
from tests import clips
from tests.cluster import engine_checks
from tests.cluster.conftest import read_probe
from tests.cluster.probe.sitecustomize import UNIT_BARRIER_FILE
from tests.pipeline.test_pipeline import KEY_COLUMNS, pipeline_flags, read_sorted


def flink_flags(running) -> list:
    return (["--runner=FlinkRunner", f"--flink_master={running.cluster.flink_master}", "--flink_version=1.19",
             f"--flink_job_server_jar={running.files.flink_job_server_jar}", "--parallelism=2"]
            + [f"--job_server_jvm_property={option}" for option in SHORT_LIVED_JVM_OPTIONS])


def test_flink_with_worker_pools_gives_the_direct_runners_rows_from_two_taskmanagers_at_once(
        flink, clip_folder, copies_folder, remote_weights, direct_rows, tmp_path):
    engine_checks.check_worker_pools_run("flink external", flink, flink_flags(flink), clip_folder, copies_folder,
                                         remote_weights, direct_rows, tmp_path / "out", sdk_processes_per_pool=1)
    assert flink.cluster.overview()["jobs-finished"] >= 1



UNIT_CLIP_FRAMES = 360  # 12 s at 30 fps: 24 work units of 0.5 s
UNIT_S = 0.5


def test_flink_spreads_the_work_units_of_one_video_over_both_taskmanagers_at_once(
        flink, synthetic_weights, remote_weights, tmp_path):
    """One video cut into work units (``beam_pipeline.units``): both TaskManagers' SDK processes encode units of it
    at the same time, and the rows equal the DirectRunner's unsplit run's."""
    clip = clips.moving_face_clip(tmp_path / "long.mp4", n_frames=UNIT_CLIP_FRAMES)
    run(pipeline_flags(clip, synthetic_weights, tmp_path / "direct") + ["--work_unit_s", "0"])
    with engine_checks.probe_barrier(flink.probe_dir, UNIT_BARRIER_FILE):
        engine_checks.run_and_time("flink units", pipeline_flags(clip, remote_weights, tmp_path / "flink")
                                   + ["--work_unit_s", str(UNIT_S)] + flink_flags(flink)
                                   + ["--environment_type=EXTERNAL",
                                      f"--environment_config={flink.cluster.environment_config}"])
    for table in ("frames", "videos"):
        key = KEY_COLUMNS if table == "frames" else ["video_uri"]
        engine_checks.assert_same_table(read_sorted(tmp_path / "direct" / table, key),
                                        read_sorted(tmp_path / "flink" / table, key), f"flink units {table}")
    units = [record for record in read_probe(flink.probe_dir)
             if record["event"] == "unit" and record["uri"] == str(clip)]
    assert sorted(record["index"] for record in units) == list(range(UNIT_CLIP_FRAMES // 15))
    engine_checks.assert_overlap_on_two_pools(units)

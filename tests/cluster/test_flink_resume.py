"""A Flink job killed twice and resumed by the same command ends with the DirectRunner's tables.

On the session's Flink 1.19 cluster (EXTERNAL worker pools, ``gs://`` weights), the same
``python -m beam_pipeline.run`` command runs three times on the clip folder and the two copies:

1. once a video is committed with its frames, TaskManager 0 gets SIGKILL: the job fails, its launcher exits
   with an error; the TaskManager is started again;
2. once this run has committed a video of its own, the launcher and its job server get SIGKILL (their whole
   process group, as when the launching machine dies): the Flink job runs on without them, so it is cancelled
   on the cluster (what an operator does; ``beam_pipeline.locks`` says why);
3. the third run goes to the end.

Kill points are found by polling the output, never by sleeping. At each kill the test holds the SDK processes
started so far (``probe.sitecustomize.hold_started_processes``): a stopped job's processes finish the video each
is in, and start no other, so that the next run still has videos to do however fast this one was.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest

from beam_pipeline.commits import COMMITS_DIR, RECORD_FILE
from tests.cluster import engine_checks
from tests.cluster.conftest import COPIES
from tests.cluster.probe.sitecustomize import hold_started_processes
from tests.cluster.test_flink import flink_flags
from tests.pipeline.test_pipeline import pipeline_flags

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 900
INPUTS = len(engine_checks.ALL_CLIPS) + len(COPIES)


def committed(output: Path) -> List[str]:
    """Ids of the committed videos."""
    return sorted(path.parent.name for path in (output / COMMITS_DIR).glob(f"*/{RECORD_FILE}"))


def committed_with_frames(output: Path) -> List[str]:
    return [video_id for video_id in committed(output) if any((output / COMMITS_DIR / video_id).glob("frames.*"))]


def start(flags: List[str]) -> subprocess.Popen:
    """The launcher in a session of its own (its job server JVM goes with it)."""
    return subprocess.Popen([sys.executable, "-m", "beam_pipeline.run", *flags], cwd=str(REPO_ROOT),  # pylint: disable=consider-using-with
                            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for(process: subprocess.Popen, condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert process.poll() is None, f"the run ended before {what}: {process.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, f"{what} never came"
        time.sleep(0.1)


def kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@pytest.fixture(scope="module")
def killed_and_resumed(flink, clip_folder, copies_folder, remote_weights, tmp_path_factory) -> Dict[str, object]:
    output = tmp_path_factory.mktemp("flink-resume") / "out"
    flags = (pipeline_flags(clip_folder, remote_weights, output) + ["--input", str(copies_folder)]
             + flink_flags(flink)
             + ["--environment_type=EXTERNAL", f"--environment_config={flink.cluster.environment_config}"])
    cluster = flink.cluster
    record: Dict[str, object] = {"output": output, "copies": engine_checks.copies_of(clip_folder, copies_folder)}
    jobs_before = set(cluster.jobs())

    first = start(flags)
    try:
        wait_for(first, lambda: committed_with_frames(output), "a committed video")
        hold_started_processes(flink.probe_dir)
        cluster.kill_task_manager(0)
        record["after_taskmanager_kill"] = committed(output)
        _, err = first.communicate(timeout=WAIT_S)
        record["first_returncode"], record["first_error"] = first.returncode, err[-3000:]
    finally:
        kill_group(first)
        cluster.start_task_manager(0)

    second = start(flags)
    try:
        seen = set(committed(output))
        wait_for(second, lambda: set(committed(output)) - seen, "a video committed by the second run")
        hold_started_processes(flink.probe_dir)
        kill_group(second)
        record["after_launcher_kill"] = committed(output)
        running = [job for job, status in cluster.jobs().items() if status == "RUNNING" and job not in jobs_before]
        record["running_without_launcher"] = running
        record["cancelled"] = [cluster.cancel_job(job) for job in running]
    finally:
        kill_group(second)
        for job, status in cluster.jobs().items():
            if status == "RUNNING" and job not in jobs_before:
                cluster.cancel_job(job)

    record["result"] = engine_checks.run_and_time("flink resumed", flags)
    print(f"flink resume: {len(record['after_taskmanager_kill'])} of {INPUTS} inputs committed at the TaskManager "
          f"kill, {len(record['after_launcher_kill'])} at the launcher kill")
    return record


def test_a_killed_taskmanager_fails_the_job_and_keeps_the_videos_committed_before(killed_and_resumed):
    assert killed_and_resumed["first_returncode"] not in (0, 3), killed_and_resumed["first_error"]
    assert 1 <= len(killed_and_resumed["after_taskmanager_kill"]) < INPUTS


def test_a_killed_launcher_leaves_its_job_running_and_keeps_every_commit(killed_and_resumed):
    assert len(killed_and_resumed["running_without_launcher"]) == 1
    assert killed_and_resumed["cancelled"] == ["CANCELED"]
    assert set(killed_and_resumed["after_taskmanager_kill"]) < set(killed_and_resumed["after_launcher_kill"])


def test_the_third_run_skips_every_committed_video_and_ends_with_the_direct_runners_tables(killed_and_resumed,
                                                                                            direct_rows):
    result = killed_and_resumed["result"]
    output = killed_and_resumed["output"]
    assert set(result.plan.committed) >= set(killed_and_resumed["after_launcher_kill"])
    engine_checks.assert_rows_match(direct_rows, output, killed_and_resumed["copies"])
    assert sorted(path.name for path in (output / "frames").iterdir()) == ["part-00000-of-00001.parquet"]
    assert len(committed(output)) == INPUTS

"""``mimamo run`` on the Flink cluster beside videos with real faults: a decoder that dies with SIGSEGV, one that
hangs, and a real 8192x8192 H.264 file, next to good clips (the corpus and fault injection of
``tests/pipeline/test_fault_isolation.py``).

The job runs with ``--environment_type=LOOPBACK``: Flink schedules it and its SDK harness runs in the launching
process, so the injected faults (``$MIMAMO_FAULTS`` and ``PYTHONPATH``) reach the face stage's child processes as
they would on a worker. The run ends with status 3; each bad video has its own ``failed`` row and reason; the good
videos' rows are exactly those of a clean run on the local runner, and the job finished on the cluster.
"""
from pathlib import Path

import pytest

from tests.cluster.engine_checks import failure_report
from tests.cluster.test_flink import flink_flags
from tests.pipeline.test_fault_isolation import (FAULTS, FLAGS, GOOD, STALL_S, assert_good_rows_equal_clean_run,
                                                 clean_output, corpus, run_mimamo, videos_by_name, weight_flags)

__all__ = ["clean_output", "corpus"]  # fixtures of test_fault_isolation used here


@pytest.fixture(scope="module")
def flink_faulty_run(flink, corpus, synthetic_weights, tmp_path_factory):
    output = tmp_path_factory.mktemp("flink-faulty") / "out"
    finished_before = flink.cluster.overview()["jobs-finished"]
    done = run_mimamo(["run", str(corpus), "--output", str(output), "--stall_timeout_s", str(STALL_S),
                       *weight_flags(synthetic_weights), *FLAGS, *flink_flags(flink), "--environment_type=LOOPBACK"],
                      {"MIMAMO_FAULTS": FAULTS}, corpus.parent)
    done.report = failure_report(output, flink.cluster.log_dir)
    return output, done, flink.cluster.overview()["jobs-finished"] - finished_before


def test_the_flink_job_finishes_and_the_run_ends_with_status_3(flink_faulty_run):
    _, done, jobs_finished = flink_faulty_run
    # on a failure, the run's and the cluster's error lines too: the cause of a failed LOOPBACK job is there
    assert done.returncode == 3, done.stdout + done.stderr + done.report
    assert "3 input(s) failed" in done.stdout, done.stdout
    assert jobs_finished >= 1
    assert done.lingering == []
    # the in-process SDK harness's threads that end when the job server goes are logged, not printed
    assert "Traceback" not in done.stderr and "Exception in thread" not in done.stderr, done.stderr + done.report


def test_each_bad_video_has_its_row_and_reason(flink_faulty_run, corpus: Path):
    by_name = videos_by_name(flink_faulty_run[0])
    assert sorted(by_name) == sorted(path.name for path in corpus.iterdir())
    reasons = {name: (row["status"], row["error_stage"], row["error_kind"], row["error"])
               for name, row in by_name.items() if name not in GOOD}
    assert reasons == {
        "crash.mp4": ("failed", "faces", "permanent",
                      f"FaceStageError: {corpus / 'crash.mp4'}: face stage crashed: SIGSEGV (before the first frame)"),
        "hang.mp4": ("failed", "probe", "permanent",
                     f"FaceStageError: {corpus / 'hang.mp4'}: no new frame for {STALL_S} s (while probing); the face "
                     "stage process was stopped"),
        "huge.mp4": ("failed", "probe", "permanent",
                     f"VideoError: {corpus / 'huge.mp4'}: frame 8192x8192 over the limit of 10000000 pixels "
                     "(67108864 pixels)"),
    }


def test_the_good_videos_rows_are_exactly_those_of_a_clean_local_run(flink_faulty_run, clean_output, corpus: Path):
    assert_good_rows_equal_clean_run(flink_faulty_run[0], clean_output, corpus)

"""Storage errors that pass, against a real S3 server (moto) behind a loopback proxy that answers 503.

The runs are in-process ``python -m beam_pipeline.run`` runs reading their videos from ``s3://`` through the
proxy. The 503s are real HTTP answers; only the waits between tries are shortened: this project's retry
policies (``faults.IO_RETRY``, ``faults.VIDEO_RETRY``) get millisecond delays, Beam's own S3 retries keep their
number of tries without their multi-second sleeps, and botocore's retries are off (``AWS_MAX_ATTEMPTS=1``).
"""
from pathlib import Path
from typing import Iterator, List

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.utils import retry as beam_retry

from beam_pipeline import faults
from beam_pipeline.commits import COMMITS_DIR, RECORD_FILE, RETRY_RECORD_FILE
from beam_pipeline.rows import compute_video_id
from beam_pipeline.run import run
from tests import clips
from tests.fault_proxy import FaultProxy
from tests.local_servers import BUCKET
from tests.pipeline.test_cloud_storage import upload

S3_KEYS = ["--s3_access_key_id=testing", "--s3_secret_access_key=testing", "--s3_region_name=us-east-1"]
PREFIX = f"s3://{BUCKET}/transient"
FLAKY = f"{PREFIX}/flaky.mp4"
STEADY = f"{PREFIX}/steady.mp4"


@pytest.fixture(scope="module")
def proxy(s3_server, tmp_path_factory) -> Iterator[FaultProxy]:
    """The proxy in front of moto, with the two clips uploaded through it."""
    with FaultProxy(s3_server) as fault_proxy:
        FileSystems.set_options(PipelineOptions([f"--s3_endpoint_url={fault_proxy.base_url}", *S3_KEYS]))
        folder = tmp_path_factory.mktemp("transient-clips")
        upload(clips.moving_face_clip(folder / "flaky.mp4", n_frames=16, size=(320, 240)), FLAKY)
        upload(clips.no_face_clip(folder / "steady.mp4", n_frames=8), STEADY)
        yield fault_proxy


def shorten_waits(patch: pytest.MonkeyPatch) -> None:
    patch.setattr(faults, "IO_RETRY", faults.RetryPolicy(attempts=3, first_delay_s=0.01, max_delay_s=0.02))
    patch.setattr(faults, "VIDEO_RETRY", faults.RetryPolicy(attempts=2, first_delay_s=0.01, max_delay_s=0.02))
    patch.setattr(beam_retry.Clock, "sleep", lambda self, seconds: None)
    patch.setenv("AWS_MAX_ATTEMPTS", "1")


@pytest.fixture
def short_waits(monkeypatch) -> None:
    shorten_waits(monkeypatch)


def flags(output: Path, proxy: FaultProxy, weights) -> List[str]:
    checkpoint, backbone = weights
    return ["--input", f"{PREFIX}/", "--output", str(output), "--checkpoint", str(checkpoint), "--backbone",
            str(backbone), "--length", "8", "--stride", "8", "--compute_batch_size", "8",
            f"--s3_endpoint_url={proxy.base_url}", *S3_KEYS]


def read_sorted(folder: Path, keys: List[str]) -> pa.Table:
    return pq.read_table(folder).sort_by([(key, "ascending") for key in keys])


def videos_by_uri(output: Path) -> dict:
    return {row["video_uri"]: row for row in pq.read_table(output / "videos").to_pylist()}


@pytest.fixture(scope="module")
def retried_run(proxy, synthetic_weights, tmp_path_factory) -> Path:
    """The output of a run during which the flaky video's first 3 GETs were answered 503; it also serves as the
    run that storage never interrupted."""
    output = tmp_path_factory.mktemp("retried") / "out"
    with pytest.MonkeyPatch.context() as patch:
        shorten_waits(patch)
        proxy.heal()
        proxy.fail("GET", "/transient/flaky.mp4", times=3)
        run(flags(output, proxy, synthetic_weights))
        assert proxy.count("GET", "/transient/flaky.mp4", 503) == 3
    return output


def test_a_503_for_a_while_is_retried_and_the_video_ends_ok(retried_run):
    rows = videos_by_uri(retried_run)
    assert (rows[FLAKY]["status"], rows[STEADY]["status"]) == ("ok", "no_face")
    assert pq.read_table(retried_run / "frames").num_rows == 16


def test_a_video_whose_storage_stays_down_is_a_transient_failure_and_the_rerun_runs_only_it(
        proxy, short_waits, synthetic_weights, retried_run, tmp_path):
    output = tmp_path / "out"
    proxy.fail("GET", "/transient/flaky.mp4")  # down until healed

    first = run(flags(output, proxy, synthetic_weights))

    failed = videos_by_uri(output)[FLAKY]
    assert (failed["status"], failed["error_stage"], failed["error_kind"]) == ("failed", "read", "transient")
    assert videos_by_uri(output)[STEADY]["status"] == "no_face"
    counters = {item.key.metric.name: item.committed for item in first.metrics().query()["counters"]}
    assert counters["table_videos_failed"] == 1  # python -m beam_pipeline.run exits 3
    flaky_dir = output / COMMITS_DIR / compute_video_id(FLAKY)
    steady_record = output / COMMITS_DIR / compute_video_id(STEADY) / RECORD_FILE
    assert [path.name for path in flaky_dir.iterdir()] == [RETRY_RECORD_FILE]
    steady_stamp = steady_record.stat().st_mtime_ns

    proxy.heal()
    seen = len(proxy.requests)
    second = run(flags(output, proxy, synthetic_weights))

    assert second.plan.retried == 1 and len(second.plan.committed) == 1
    reads = {path for method, path, _ in proxy.requests[seen:] if method == "GET" and path.endswith(".mp4")}
    assert reads == {f"/{BUCKET}/transient/flaky.mp4"}  # the steady video was not read again
    assert steady_record.stat().st_mtime_ns == steady_stamp
    assert sorted(path.name for path in flaky_dir.iterdir()) == ["frames.16.parquet", RECORD_FILE]
    for table, keys in (("videos", ["video_uri"]), ("frames", ["video_uri", "face_id", "frame_index"])):
        assert read_sorted(output / table, keys).equals(read_sorted(retried_run / table, keys)), table


def test_a_streamed_video_whose_storage_fails_is_a_transient_failure_not_a_damaged_file(
        proxy, short_waits, synthetic_weights, tmp_path):
    """Decoded from storage (over the disk budget), a failed read would look like a corrupt file to the decoder."""
    output = tmp_path / "out"
    proxy.heal()
    proxy.fail("GET", "/transient/flaky.mp4")  # down until healed
    run(flags(output, proxy, synthetic_weights) + ["--video_disk_budget_mb=0"])
    failed = videos_by_uri(output)[FLAKY]
    assert (failed["status"], failed["error_stage"], failed["error_kind"]) == ("failed", "read", "transient")
    assert failed["error"].startswith(f"OSError: [Errno 5] {FLAKY}: reading from storage failed: ")
    assert videos_by_uri(output)[STEADY]["status"] == "no_face"

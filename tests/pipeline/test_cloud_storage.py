"""gs:// and s3:// inputs, outputs and weights, against real local servers on 127.0.0.1.

``gcp-storage-emulator`` stands in for Cloud Storage (``STORAGE_EMULATOR_HOST``, set in this process only while
the module runs) and moto's server mode for S3 (Beam's ``--s3_endpoint_url`` options). The same clips run
locally, gs:// -> gs:// and s3:// -> s3://; the rows must be the same.
"""
import dataclasses
import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline import remote_files
from beam_pipeline.beam_compat import use_anonymous_gcs_for_emulator
from beam_pipeline.metrics import METRICS_NAMESPACE
from beam_pipeline.faults import TRANSIENT, classify_error
from beam_pipeline.remote_files import (RemoteVideo, cache_remote_weights, open_local_copy, open_video_source,
                                        storage_reads_checked)
from beam_pipeline.rows import compute_video_id
from beam_pipeline.run import run
from mimamo_ops.decoding.video import iter_frames, probe_video
from mimamo_ops.errors import CheckpointError, WeightsFetchError
from mimamo_ops.model.checkpoints import MIMAMO, load_mimamo_checkpoint, sha256_file
from tests import clips
from tests.local_servers import BUCKET

S3_KEYS = {"s3_access_key_id": "testing", "s3_secret_access_key": "testing", "s3_region_name": "us-east-1"}
CLIP_FRAMES = 20
KEY_COLUMNS = ["video_uri", "face_id", "frame_index"]


def s3_flags(url: str) -> List[str]:
    return [f"--s3_endpoint_url={url}"] + [f"--{name}={value}" for name, value in S3_KEYS.items()]


@pytest.fixture(scope="module")
def servers(gcs_emulator, s3_server, tmp_path_factory) -> Iterator[Dict[str, str]]:
    """Points this process at the emulator (its variable) and a fresh weights cache while the module runs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
        patch.setenv("MIMAMO_CACHE_DIR", str(tmp_path_factory.mktemp("weights-cache")))
        use_anonymous_gcs_for_emulator()
        yield {"gs": gcs_emulator, "s3": s3_server}


@pytest.fixture
def storage(servers) -> Dict[str, str]:
    """Both servers, with ``FileSystems`` given the S3 options (each pipeline run resets them to its own)."""
    FileSystems.set_options(PipelineOptions(s3_flags(servers["s3"])))
    return servers


def upload(local: Path, uri: str) -> None:
    with open(local, "rb") as source, FileSystems.create(uri) as target:
        target.write(source.read())


def read_remote_table(directory: str) -> pa.Table:
    tables = []
    for item in FileSystems.match([FileSystems.join(directory, "*.parquet")])[0].metadata_list:
        with FileSystems.open(item.path) as handle:
            tables.append(pq.read_table(pa.BufferReader(handle.read())))
    return pa.concat_tables(tables)


@pytest.fixture(scope="module")
def cloud_clips(tmp_path_factory) -> Path:
    """A one-face clip and a corrupt file (a failure row must come through remote storage too)."""
    folder = tmp_path_factory.mktemp("cloud-clips")
    clips.moving_face_clip(folder / "one_face.mp4", n_frames=CLIP_FRAMES)
    clips.corrupt_file(folder / "corrupt.mp4")
    return folder


def pipeline_flags(inputs: str, output: str, checkpoint: str, backbone: str) -> List[str]:
    return ["--input", inputs, "--output", output, "--checkpoint", checkpoint, "--backbone", backbone,
            "--length", "16", "--stride", "16", "--smoothing_size", "0.1", "--compute_batch_size", "8"]


@pytest.fixture(scope="module")
def local_tables(cloud_clips, synthetic_weights, tmp_path_factory) -> Tuple[pa.Table, pa.Table]:
    output = tmp_path_factory.mktemp("local-run")
    checkpoint, backbone = synthetic_weights
    run(pipeline_flags(str(cloud_clips), str(output), str(checkpoint), str(backbone)))
    return pq.read_table(output / "frames"), pq.read_table(output / "videos")


def remote_run_flags(scheme: str, cloud_clips: Path, synthetic_weights, extra_flags: List[str],
                     out: str) -> Tuple[str, List[str]]:
    """Uploads the clips and the checkpoint under ``<scheme>://BUCKET/``; returns (root URI, the flags of a run
    remote -> remote, into ``<scheme>://BUCKET/<out>``).

    The 94 MB backbone stays local to keep the module fast; the same code fetches either file.
    """
    root = f"{scheme}://{BUCKET}"
    for clip in sorted(cloud_clips.iterdir()):
        upload(clip, f"{root}/clips/{clip.name}")
    checkpoint, backbone = synthetic_weights
    upload(checkpoint, f"{root}/weights/{checkpoint.name}")
    return root, (pipeline_flags(f"{root}/clips/", f"{root}/{out}", f"{root}/weights/{checkpoint.name}",
                                 str(backbone)) + extra_flags)


def assert_same_rows_as_local(local: pa.Table, remote: pa.Table, local_folder: Path, remote_folder: str,
                              sort_by: List[str]) -> None:
    """Same rows once the video URIs are mapped back; the ids follow the URIs."""
    uris = [uri.replace(remote_folder, str(local_folder) + "/") for uri in remote["video_uri"].to_pylist()]
    assert remote["video_id"].to_pylist() == [compute_video_id(uri) for uri in remote["video_uri"].to_pylist()]
    mapped = remote.set_column(remote.schema.get_field_index("video_uri"), remote.schema.field("video_uri"),
                               pa.array(uris))
    mapped = mapped.drop_columns(["video_id"]).sort_by([(column, "ascending") for column in sort_by])
    expected = local.drop_columns(["video_id"]).sort_by([(column, "ascending") for column in sort_by])
    assert mapped.num_rows == expected.num_rows > 0
    assert mapped.equals(expected)


def assert_remote_run_has_local_rows(local_tables, root: str, out: str, cloud_clips: Path) -> pa.Table:
    """The frames and videos (all but the error text) of the run under ``<root>/<out>`` are the local run's;
    returns its videos table."""
    local_frames, local_videos = local_tables
    assert_same_rows_as_local(local_frames, read_remote_table(f"{root}/{out}/frames"), cloud_clips,
                              f"{root}/clips/", KEY_COLUMNS)
    videos = read_remote_table(f"{root}/{out}/videos")
    # the error text names the file the face stage read: a temp copy or the URI remotely, the clip itself locally
    assert_same_rows_as_local(local_videos.drop_columns(["error"]), videos.drop_columns(["error"]), cloud_clips,
                              f"{root}/clips/", ["video_uri"])
    return videos


def temp_copies() -> List[str]:
    root = Path(os.environ.get("TMPDIR", "/tmp"))
    return sorted(str(path) for path in root.glob("mimamo-video-*"))


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_a_remote_video_is_copied_whole_and_the_copy_is_always_removed(scheme, storage, cloud_clips):
    uri = f"{scheme}://{BUCKET}/copies/one_face.mp4"
    upload(cloud_clips / "one_face.mp4", uri)
    before = temp_copies()
    with open_local_copy(uri) as local_path:
        assert local_path.endswith(".mp4") and local_path not in before
        assert Path(local_path).read_bytes() == (cloud_clips / "one_face.mp4").read_bytes()
    assert not Path(local_path).exists() and temp_copies() == before
    with pytest.raises(RuntimeError, match="face stage crashed"), open_local_copy(uri) as local_path:
        raise RuntimeError("face stage crashed")
    assert not Path(local_path).exists() and temp_copies() == before


def test_a_remote_video_over_the_disk_budget_is_decoded_from_storage_with_a_local_runs_rows(storage, cloud_clips,
                                                                                             synthetic_weights,
                                                                                             local_tables):
    """On S3 with credentials given as options: the face stage's process reads the bytes through the worker."""
    budget_mb = 0.01
    assert all(path.stat().st_size > budget_mb * (1 << 20) for path in cloud_clips.iterdir())
    root, flags = remote_run_flags("s3", cloud_clips, synthetic_weights,
                                   s3_flags(storage["s3"]) + [f"--video_disk_budget_mb={budget_mb}"], out="streamed")
    result = run(flags)
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    assert {c.key.metric.name: c.committed for c in query["counters"]}["videos_streamed"] == 2
    videos = assert_remote_run_has_local_rows(local_tables, root, "streamed", cloud_clips)
    failed = {row["video_uri"]: row["error"] for row in videos.to_pylist()}[f"{root}/clips/corrupt.mp4"]
    assert failed.startswith(f"VideoError: {root}/clips/corrupt.mp4: cannot open")  # named by its URI


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_a_remote_video_larger_than_the_free_temp_disk_is_streamed_never_copied(scheme, storage, cloud_clips,
                                                                                 monkeypatch):
    uri = f"{scheme}://{BUCKET}/copies/too_big.mp4"
    clip = cloud_clips / "one_face.mp4"
    upload(clip, uri)
    before = temp_copies()
    monkeypatch.setattr(remote_files, "_free_bytes", lambda directory: clip.stat().st_size - 1)
    with open_video_source(uri) as source:
        assert isinstance(source, RemoteVideo) and source.name == uri and temp_copies() == before
        with source.open() as first, source.open() as second:  # each pass reads from byte 0, on its own
            assert first.read(100) == clip.read_bytes()[:100]
            second.seek(-50, os.SEEK_END)
            assert second.read() == clip.read_bytes()[-50:]
        assert probe_video(source) == dataclasses.replace(probe_video(clip), path=uri)
    # OpenFace reads local files only: there the video is refused before anything is copied
    with pytest.raises(OSError, match="do not fit"), open_video_source(uri, local_file_only=True):
        pass
    with pytest.raises(OSError, match="over the disk budget"), open_video_source(uri, disk_budget_bytes=1000,
                                                                                  local_file_only=True):
        pass
    assert temp_copies() == before


def test_a_storage_error_part_way_through_a_streamed_video_fails_it_as_transient(storage, cloud_clips, monkeypatch):
    uri = f"gs://{BUCKET}/copies/cut_short.mp4"
    clip = cloud_clips / "one_face.mp4"
    upload(clip, uri)
    half = clip.stat().st_size // 2
    storage_open = FileSystems.open
    opened = []

    def failing_open(path, *args, **kwargs):
        """A stream that is reset once it has read half of the file's bytes."""
        stream = storage_open(path, *args, **kwargs)
        opened.append(path)
        read, done = stream.read, [0]

        def read_until_half(size=-1):
            if done[0] >= half:
                raise ConnectionResetError(errno.ECONNRESET, "connection reset by peer")
            data = read(size)
            done[0] += len(data)
            return data
        stream.read = read_until_half
        return stream

    monkeypatch.setattr(FileSystems, "open", failing_open)
    with open_video_source(uri, disk_budget_bytes=0) as source:
        frames = []
        with pytest.raises(OSError) as raised, storage_reads_checked(source):
            frames.extend(iter_frames(source))  # the decoder alone takes the reset for a cut file
    assert opened == [uri] and 0 < len(frames) < CLIP_FRAMES
    assert raised.value.errno == errno.EIO and classify_error(raised.value) == TRANSIENT
    assert str(raised.value).endswith(f"{uri}: reading from storage failed: ConnectionResetError: "
                                      f"[Errno {errno.ECONNRESET}] connection reset by peer")


def test_remote_weights_are_fetched_once_verified_and_cached_by_uri_and_size(storage, synthetic_weights, tmp_path):
    checkpoint = synthetic_weights[0]
    uri = f"gs://{BUCKET}/cache-test/{checkpoint.name}"
    upload(checkpoint, uri)
    local, sha256 = cache_remote_weights(uri, MIMAMO, cache_dir=str(tmp_path))
    assert sha256 == sha256_file(checkpoint) and local.read_bytes() == checkpoint.read_bytes()
    assert local.is_relative_to(tmp_path / "remote")
    FileSystems.delete([uri])  # a second call in this process does not touch the store again
    assert cache_remote_weights(uri, MIMAMO, cache_dir=str(tmp_path)) == (local, sha256)


def test_a_changed_object_is_fetched_again_and_a_damaged_cache_copy_is_replaced(storage, synthetic_weights,
                                                                                 tmp_path):
    checkpoint = synthetic_weights[0]
    uri = f"s3://{BUCKET}/cache-test/weights.pth.tar"
    upload(checkpoint, uri)
    first, _ = cache_remote_weights(uri, MIMAMO, cache_dir=str(tmp_path))
    remote_files._FETCHED.clear()  # pylint: disable=protected-access  # as a new worker process on the same disk
    first.write_bytes(b"damaged")
    again, sha256 = cache_remote_weights(uri, MIMAMO, cache_dir=str(tmp_path))
    assert again == first and sha256 == sha256_file(checkpoint) == sha256_file(again)
    retrained = tmp_path / "retrained.pth.tar"
    torch.save({"state_dict": load_mimamo_checkpoint(checkpoint)[0], "epoch": 2, "best_loss": 0.5}, retrained)
    assert retrained.stat().st_size != checkpoint.stat().st_size
    upload(retrained, uri)
    remote_files._FETCHED.clear()  # pylint: disable=protected-access
    changed, changed_sha256 = cache_remote_weights(uri, MIMAMO, cache_dir=str(tmp_path))
    assert changed.parent != first.parent and changed_sha256 == sha256_file(retrained)


def test_remote_weights_of_the_wrong_kind_or_hash_never_enter_the_cache(storage, synthetic_weights, tmp_path,
                                                                        monkeypatch):
    not_weights = tmp_path / "not_weights.pth"
    torch.save({"some_layer.weight": torch.zeros(3, 4)}, not_weights)
    wrong_kind = f"gs://{BUCKET}/bad/not_weights.pth"
    upload(not_weights, wrong_kind)
    with pytest.raises(CheckpointError, match=f"^{wrong_kind}: does not fit a MIMAMO checkpoint"):
        cache_remote_weights(wrong_kind, MIMAMO, cache_dir=str(tmp_path / "cache"))
    pinned = f"gs://{BUCKET}/bad/pinned.pth.tar"
    upload(synthetic_weights[0], pinned)
    monkeypatch.setenv("MIMAMO_CHECKPOINT_SHA256", "0" * 64)
    with pytest.raises(WeightsFetchError, match=f"^{pinned}: SHA-256 .* differs from the pinned"):
        cache_remote_weights(pinned, MIMAMO, cache_dir=str(tmp_path / "cache"))
    # nothing but the entries' empty lock files (which stay: removing one while another process waits on it
    # would let a third process lock a new file beside it)
    assert [path for path in (tmp_path / "cache").rglob("*") if path.is_file() and path.suffix != ".lock"] == []
    assert {path.stat().st_size for path in (tmp_path / "cache").rglob("*.lock")} == {0}


def test_a_wrong_remote_weights_uri_fails_at_submission(storage, cloud_clips, synthetic_weights, tmp_path):
    flags = pipeline_flags(str(cloud_clips), str(tmp_path / "never"), f"gs://{BUCKET}/missing/model.pth.tar",
                           str(synthetic_weights[1]))
    with pytest.raises(FileNotFoundError, match="missing/model.pth.tar"):
        run(flags)
    assert not (tmp_path / "never").exists()


FETCH_ONCE_SCRIPT = """
import json, os, sys, time
from beam_pipeline import remote_files
from mimamo_ops.model.checkpoints import MIMAMO
uri, downloads, ready, go = sys.argv[1:5]
fetch = remote_files._fetch_into_cache
def counted(*args, **kwargs):  # a probe: records each download this process makes
    with open(downloads, "a") as log:
        log.write(f"{os.getpid()}\\n")
    return fetch(*args, **kwargs)
remote_files._fetch_into_cache = counted
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
path, sha256 = remote_files.cache_remote_weights(uri, MIMAMO)
print(json.dumps([str(path), sha256]))
"""
PROCESSES = 4


def test_the_processes_of_one_machine_fetch_remote_weights_once(servers, synthetic_weights, tmp_path):
    """Four worker-like processes ask for the same gs:// weights at the same moment, sharing one cache."""
    checkpoint = synthetic_weights[0]
    uri = f"gs://{BUCKET}/machine-cache/{checkpoint.name}"
    upload(checkpoint, uri)
    env = dict(os.environ, STORAGE_EMULATOR_HOST=servers["gs"], MIMAMO_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    downloads, go = tmp_path / "downloads.txt", tmp_path / "go"
    ready = [tmp_path / f"ready-{index}" for index in range(PROCESSES)]
    processes = [subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-c", FETCH_ONCE_SCRIPT, uri, str(downloads), str(flag), str(go)], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for flag in ready]
    try:
        deadline = time.monotonic() + 300
        while not all(flag.exists() for flag in ready):
            assert all(process.poll() is None for process in processes), [p.communicate() for p in processes]
            assert time.monotonic() < deadline, "the processes did not start"
            time.sleep(0.05)
        go.touch()  # all ask now
        results = [process.communicate(timeout=300) for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()
    assert [process.returncode for process in processes] == [0] * PROCESSES, [err for _, err in results]
    answers = {out.strip().splitlines()[-1] for out, _ in results}
    assert len(answers) == 1 and json.loads(answers.pop())[1] == sha256_file(checkpoint)
    assert len(downloads.read_text().splitlines()) == 1


def committed_records(output: str) -> int:
    return len(FileSystems.match([f"{output}/_videos/*/video.parquet"])[0].metadata_list)


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_a_remote_to_remote_run_killed_after_its_first_commit_resumes_to_the_local_runs_rows(
        scheme, storage, cloud_clips, synthetic_weights, local_tables):
    """Clips, checkpoint and output in remote storage: the run is killed once it has committed a video, the same
    command run again does the rest, and the tables then hold the rows of a run on the local files."""
    out = f"resume-{time.time_ns()}"
    root, flags = remote_run_flags(scheme, cloud_clips, synthetic_weights, s3_flags(storage["s3"]), out)
    output = f"{root}/{out}"
    env = dict(os.environ, STORAGE_EMULATOR_HOST=storage["gs"], PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    process = subprocess.Popen([sys.executable, "-m", "beam_pipeline.run", *flags], env=env,  # pylint: disable=consider-using-with
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while committed_records(output) < 1:
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no video was committed"
            # One S3 listing costs this process about 0.3 CPU-s (Beam builds a boto3 client per call), and the
            # run it watches shares the worker's CPU: poll every 0.25 s, not in a busy loop.
            time.sleep(0.25)
        process.kill()
        process.wait(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -9 and committed_records(output) == 1

    result = run(flags)

    assert len(result.plan.committed) == 1
    videos = assert_remote_run_has_local_rows(local_tables, root, out, cloud_clips)
    rows = {row["video_uri"]: row for row in videos.to_pylist()}
    assert sorted(rows) == [f"{root}/clips/corrupt.mp4", f"{root}/clips/one_face.mp4"]
    failed = rows[f"{root}/clips/corrupt.mp4"]
    assert (failed["status"], failed["error_stage"]) == ("failed", "probe")
    assert failed["error"].startswith("VideoError: ") and "corrupt.mp4: cannot open" in failed["error"]
    footer = pq.read_schema(pa.BufferReader(FileSystems.open(
        FileSystems.match([f"{output}/frames/*.parquet"])[0].metadata_list[0].path).read())).metadata
    assert footer[b"mimamo.checkpoint"].decode() == f"{root}/weights/{synthetic_weights[0].name}"
    assert footer[b"mimamo.checkpoint_sha256"].decode() == sha256_file(synthetic_weights[0])

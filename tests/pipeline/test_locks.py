"""One writer per output: the claims of ``beam_pipeline.locks`` on local, gs:// and s3:// outputs, and two real
``mimamo run`` processes on one output (the second is refused in one line and touches nothing)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator

import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.beam_compat import use_anonymous_gcs_for_emulator
from beam_pipeline.locks import LOCK_DIR, OutputInUseError, OutputLock
from tests import clips
from tests.local_servers import BUCKET

S3_FLAGS = ["--s3_access_key_id=testing", "--s3_secret_access_key=testing", "--s3_region_name=us-east-1"]
WAIT_S = 300


def claims(output: Path) -> list:
    return sorted(path.name for path in (output / LOCK_DIR).glob("*.json")) if (output / LOCK_DIR).is_dir() else []


def test_a_second_run_is_refused_in_one_line_naming_the_first_and_gets_the_output_once_it_is_released(tmp_path):
    first = OutputLock(str(tmp_path), run_id="20260101T000000Z-aaaaaa")
    first.acquire()
    second = OutputLock(str(tmp_path), run_id="20260101T000001Z-bbbbbb")
    with pytest.raises(OutputInUseError) as refused:
        second.acquire()
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"--output={str(tmp_path)!r} is in use by run "
                                                      "20260101T000000Z-aaaaaa (host ")
    assert f"pid {os.getpid()}" in message
    assert claims(tmp_path) == ["20260101T000000Z-aaaaaa.json"]  # the refused run left nothing
    first.release()
    assert not (tmp_path / LOCK_DIR).exists()
    second.acquire()
    assert claims(tmp_path) == ["20260101T000001Z-bbbbbb.json"]
    second.release()


def write_claim(output: Path, run_id: str, **fields) -> Path:
    path = output / LOCK_DIR / f"{run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict({"run_id": run_id, "host": "elsewhere", "pid": 1, "started": "then"}, **fields)))
    return path


def test_a_claim_whose_heartbeat_stopped_is_taken_over(tmp_path):
    stale = write_claim(tmp_path, "20250101T000000Z-cccccc")
    old_s = time.time() - 3600
    os.utime(stale, (old_s, old_s))
    with OutputLock(str(tmp_path), run_id="20260101T000000Z-dddddd"):
        assert claims(tmp_path) == ["20260101T000000Z-dddddd.json"]


def test_a_claim_of_a_killed_process_on_this_machine_is_taken_over_at_once(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # pylint: disable=consider-using-with
    try:
        holder = subprocess.run(  # a real process takes the lock and is killed while holding it
            [sys.executable, "-c", "import os, sys; from beam_pipeline.locks import OutputLock; "
             "OutputLock(sys.argv[1], run_id='20260101T000000Z-eeeeee').acquire(); os.kill(os.getpid(), 9)",
             str(tmp_path)], check=False, timeout=WAIT_S)
        assert holder.returncode == -signal.SIGKILL
        assert claims(tmp_path) == ["20260101T000000Z-eeeeee.json"]
        alive = json.loads((tmp_path / LOCK_DIR / "20260101T000000Z-eeeeee.json").read_text())
        write_claim(tmp_path, "20260101T000000Z-ffffff", host=alive["host"], boot_id=alive["boot_id"],
                    pid=sleeper.pid)  # a live process of this machine
        with pytest.raises(OutputInUseError, match="20260101T000000Z-ffffff"):
            OutputLock(str(tmp_path)).acquire()
        sleeper.kill()
        sleeper.wait()
        with OutputLock(str(tmp_path), run_id="20260101T000001Z-gggggg"):
            assert claims(tmp_path) == ["20260101T000001Z-gggggg.json"]
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.fixture(scope="module")
def remote_roots(gcs_emulator, s3_server) -> Iterator[Dict[str, str]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
        use_anonymous_gcs_for_emulator()
        yield {"gs": f"gs://{BUCKET}/locks", "s3": f"s3://{BUCKET}/locks"}


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_remote_outputs_are_locked_alike_and_a_silent_claim_goes_stale_by_the_storage_clock(scheme, remote_roots,
                                                                                           s3_server):
    FileSystems.set_options(PipelineOptions([f"--s3_endpoint_url={s3_server}", *S3_FLAGS]))
    output = f"{remote_roots[scheme]}/{time.time_ns()}"
    first = OutputLock(output, run_id="20260101T000000Z-hhhhhh", stale_after_s=2.0)
    first.acquire()
    with pytest.raises(OutputInUseError, match="is in use by run 20260101T000000Z-hhhhhh"):
        OutputLock(output, stale_after_s=2.0).acquire()
    time.sleep(3.0)  # no heartbeat: the claim ages by the storage's clock
    with OutputLock(output, run_id="20260101T000004Z-iiiiii", stale_after_s=2.0):
        listed = [item.path for item in FileSystems.match([f"{output}/{LOCK_DIR}/*"])[0].metadata_list]
        assert [path.rsplit("/", 1)[1] for path in listed] == ["20260101T000004Z-iiiiii.json"]
    assert FileSystems.match([f"{output}/{LOCK_DIR}/*"])[0].metadata_list == []


def test_a_second_mimamo_run_on_a_live_output_is_refused_and_deletes_nothing(tmp_path, synthetic_weights):
    clips.moving_face_clip(tmp_path / "a.mp4", n_frames=16, size=(320, 240))
    clips.no_face_clip(tmp_path / "b.mp4", n_frames=8)
    output = tmp_path / "out"
    checkpoint, backbone = synthetic_weights
    command = [sys.executable, "-m", "beam_pipeline.cli", "run", str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"),
               "--output", str(output), "--checkpoint", str(checkpoint), "--backbone", str(backbone), "--length",
               "8", "--stride", "8", "--compute_batch_size", "8", "--no_progress"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # pylint: disable=consider-using-with
    try:
        deadline = time.monotonic() + WAIT_S
        while not claims(output):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first run never took the output"
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)  # the first run is live but makes no progress while the second starts
        holder = json.loads((output / LOCK_DIR / claims(output)[0]).read_text())
        before = {str(path): path.stat().st_mtime_ns for path in output.rglob("*") if path.is_file()
                  and "_logs" not in path.parts}
        second = subprocess.run(command, capture_output=True, text=True, timeout=WAIT_S, check=False)
        after = {str(path): path.stat().st_mtime_ns for path in output.rglob("*") if path.is_file()
                 and "_logs" not in path.parts}
        first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=WAIT_S)
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2, second.stderr
    (line,) = second.stderr.strip().splitlines()
    assert line.startswith(f"mimamo run: error: --output={str(output)!r} is in use by run {holder['run_id']} "
                           f"(host {holder['host']}, pid {first.pid}, started "), line
    assert before == after  # the refused run wrote and deleted nothing (but its own log)
    assert first.returncode == 0, err
    videos = pq.read_table(output / "videos").sort_by("video_uri")
    assert videos.select(["status"]).to_pylist() == [{"status": "ok"}, {"status": "no_face"}]
    assert pq.read_table(output / "frames").num_rows == 16 and claims(output) == []

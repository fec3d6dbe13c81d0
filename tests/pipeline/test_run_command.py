"""``mimamo run`` as a user runs it (real subprocesses): exit statuses, start-up checks, quiet stderr, the log."""
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pyarrow.parquet as pq
import pytest

from beam_pipeline.cli import main as cli
from mimamo_ops.runtime.openvino_models import COMPILED_CACHE_ENV
from tests import clips
from tests.unprivileged import run_without_permission_override

REPO_ROOT = Path(__file__).resolve().parents[2]
FAST_FLAGS = ["--length", "16", "--stride", "16", "--no_progress"]


def mimamo_env(home: Path) -> dict:
    """A user's environment with an empty weights cache; converted networks come from the session's cache
    (``tests/conftest.py``), as every other test's do."""
    return {"PATH": os.environ["PATH"], "HOME": str(home), "MIMAMO_CACHE_DIR": str(home / "cache"),
            COMPILED_CACHE_ENV: os.environ[COMPILED_CACHE_ENV],
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}


def mimamo(args: List[str], cwd: Path, timeout_s: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beam_pipeline.cli", *args], cwd=str(cwd), env=mimamo_env(cwd),
                          capture_output=True, text=True, timeout=timeout_s, check=False)


@pytest.fixture()
def workdir(tmp_path, synthetic_weights) -> Path:
    clips.no_face_clip(tmp_path / "still.mp4", n_frames=4)
    for name, path in zip(("ck.pth.tar", "bb.pth"), synthetic_weights):
        os.symlink(path, tmp_path / name)
    return tmp_path


WEIGHTS = ["--checkpoint", "ck.pth.tar", "--backbone", "bb.pth"]


def assert_quiet(stderr: str) -> None:
    assert "Traceback" not in stderr and " INFO " not in stderr and "apache_beam" not in stderr, stderr


def test_every_input_ok_or_no_face_exits_0_with_the_log_under_the_output(workdir):
    done = mimamo(["run", "still.mp4", "--output", "out", *WEIGHTS, *FAST_FLAGS], workdir)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    logs = list((workdir / "out" / "_logs").glob("run-*.log"))
    assert len(logs) == 1 and f"log: out/_logs/{logs[0].name}" in done.stdout
    assert "apache_beam" in logs[0].read_text()  # Beam's lines went to the file, not to stderr


def test_some_inputs_failed_exits_3_and_says_how_many_and_where(workdir):
    done = mimamo(["run", "still.mp4", "missing.mp4", "--output", "out", *WEIGHTS, *FAST_FLAGS], workdir)
    assert done.returncode == 3, done.stderr
    assert_quiet(done.stderr)
    assert "1 input(s) failed: the reasons are in out/videos/" in done.stdout
    rows = pq.read_table(workdir / "out" / "videos").sort_by("video_uri").select(["video_uri", "status"])
    assert rows.to_pylist() == [{"video_uri": "missing.mp4", "status": "failed"},
                                {"video_uri": "still.mp4", "status": "no_face"}]
    again = mimamo(["run", "still.mp4", "--output", "out", *WEIGHTS, *FAST_FLAGS], workdir)
    assert again.returncode == 2
    message = again.stderr.strip().splitlines()
    assert len(message) == 1 and message[0].startswith(
        "mimamo run: error: --output='out' holds results of a run with other options (--input"), message


def test_usage_error_exits_2(tmp_path):
    done = mimamo(["run"], tmp_path, timeout_s=120)
    assert done.returncode == 2 and "the following arguments are required: INPUT" in done.stderr


@pytest.mark.parametrize(
    "setup, flags, message",
    [
        ("file", ["--output", "taken"], "--output='taken': is an existing file, not a directory"),
        (None, ["--output", "out", "--face_size", "8", *WEIGHTS], "--face_size=8: must be >= 16 pixels"),
        (None, ["--output", "out", "--checkpoint", "nowhere.pth.tar", "--backbone", "bb.pth"],
         "nowhere.pth.tar: no such file (given as the"),
        ("text", ["--output", "out", "--checkpoint", "notes.pth.tar", "--backbone", "bb.pth"], "notes.pth.tar"),
        (None, ["--output", "out"], "no MIMAMO"),  # empty cache, no weights given
    ],
)
def test_start_up_problem_is_one_line_exit_2_before_any_work(workdir, setup, flags, message, monkeypatch, capsys):
    """In this process (``cli.main``), with the user's environment of ``mimamo_env``; the same one-line answer from
    a real ``mimamo`` process is checked in ``test_some_inputs_failed_exits_3_and_says_how_many_and_where``."""
    if setup == "file":
        (workdir / "taken").write_text("a file\n")
    if setup == "text":
        (workdir / "notes.pth.tar").write_text("not a checkpoint\n")
    for name, value in mimamo_env(workdir).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(workdir)
    status = cli.main(["run", "still.mp4", *flags, *FAST_FLAGS])
    printed = capsys.readouterr()
    assert status == 2, printed.err
    lines = printed.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mimamo run: error: ") and message in lines[0], printed.err
    assert not (workdir / "out" / "videos").exists() and printed.out == ""


def test_output_that_is_not_writable_is_one_line_exit_2(workdir):
    locked = workdir / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    command = [sys.executable, "-m", "beam_pipeline.cli", "run", "still.mp4", "--output", "locked/out", *WEIGHTS,
               *FAST_FLAGS]
    done = run_without_permission_override(command, mimamo_env(workdir), workdir, timeout_s=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "mimamo run: error: --output='locked/out': not writable (Permission denied)"]

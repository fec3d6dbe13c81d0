"""Credentials given on the command line are used but never written: not in any file under the output (tables,
commits, ``_run.json``, the lock), not in the run's log, not on the console.

``mimamo run -v`` (every logger at DEBUG) reads its videos from and writes its output to the moto S3 server with
``--s3_secret_access_key`` and ``--s3_session_token`` (moto accepts any keys, so they are sent with every
request), as a real subprocess whose temporary folder, where the log of a remote output goes, is the test's.
"""
import os
import secrets
import subprocess
import sys

import boto3

from mimamo_ops.runtime.openvino_models import COMPILED_CACHE_ENV
from tests import clips
from tests.local_servers import BUCKET
from tests.pipeline.test_run_command import REPO_ROOT

PREFIX = "secrets"


def test_no_secret_given_as_an_option_appears_under_the_output_or_in_the_log(s3_server, synthetic_weights, tmp_path):
    secret_key, token = f"S{secrets.token_hex(12)}", f"T{secrets.token_hex(12)}"
    s3 = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1")
    clip = clips.moving_face_clip(tmp_path / "face.mp4", n_frames=8, size=(320, 240))
    s3.upload_file(str(clip), BUCKET, f"{PREFIX}/in/face.mp4")
    temp = tmp_path / "tmp"
    temp.mkdir()
    checkpoint, backbone = synthetic_weights
    command = [sys.executable, "-m", "beam_pipeline.cli", "-v", "run", f"s3://{BUCKET}/{PREFIX}/in/",
               "--output", f"s3://{BUCKET}/{PREFIX}/out", "--checkpoint", str(checkpoint), "--backbone",
               str(backbone), "--length", "8", "--stride", "8", "--compute_batch_size", "8", "--no_progress",
               f"--s3_endpoint_url={s3_server}", "--s3_region_name", "us-east-1", "--s3_access_key_id", "testing",
               "--s3_secret_access_key", secret_key, f"--s3_session_token={token}"]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TMPDIR": str(temp),
           "MIMAMO_CACHE_DIR": str(tmp_path / "cache"), COMPILED_CACHE_ENV: os.environ[COMPILED_CACHE_ENV],
           "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/out/")["Contents"]]
    names = {key.split("/", 2)[2].split("/")[0] for key in keys}
    assert {"_run.json", "_videos", "frames", "videos"} <= names
    written = {key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys}
    logs = sorted((temp / "mimamo-logs").glob("run-*.log"))
    assert len(logs) == 1 and "mimamo run" in logs[0].read_text()
    written.update({str(path): path.read_bytes() for path in temp.rglob("*") if path.is_file()})
    written["stdout"], written["stderr"] = done.stdout.encode(), done.stderr.encode()
    for secret in (secret_key, token):
        assert [name for name, content in written.items() if secret.encode() in content] == [], secret
    assert "--s3_secret_access_key ***" in logs[0].read_text()

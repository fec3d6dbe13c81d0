"""Shared fixtures of the pipeline tests: a folder of real clips and local storage servers.

The weights come from ``tests/conftest.py``.
"""
import sys
from pathlib import Path
from typing import Iterator

import boto3
import pytest

from tests import clips
from tests.local_servers import BUCKET, free_port, serve

CLIP_FRAMES = 24  # short clips keep the module fast; with --length 16 each track still has two snippets


@pytest.fixture(scope="session")
def clip_folder(tmp_path_factory) -> Path:
    """Two good clips (one with two faces), a corrupt file, a zero-byte file and a clip without a face."""
    folder = tmp_path_factory.mktemp("clips")
    clips.moving_face_clip(folder / "one_face.mp4", n_frames=CLIP_FRAMES)
    clips.two_faces_clip(folder / "two_faces.mp4", n_frames=CLIP_FRAMES)
    clips.corrupt_file(folder / "corrupt.mp4")
    clips.empty_file(folder / "empty.mp4")
    clips.no_face_clip(folder / "no_face.mp4", n_frames=CLIP_FRAMES)
    return folder


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """URL of a fresh in-memory Cloud Storage emulator holding the bucket ``BUCKET``."""
    port = free_port()
    command = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port),
               "--in-memory", "--default-bucket", BUCKET, "--quiet"]
    with serve(command, port, "the Cloud Storage emulator"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """URL of a fresh moto S3 server holding the bucket ``BUCKET``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serve([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, "the moto S3 server"):
        boto3.client("s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing",
                     region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield url


@pytest.fixture(scope="session")
def first_run(clip_folder, synthetic_weights, tmp_path_factory):
    """(output, result) of one run of the clip folder with ``test_pipeline.pipeline_flags``, shared by the modules
    that compare their rows with it (one run of the real face stage and networks costs tens of seconds)."""
    from beam_pipeline.run import run  # pylint: disable=import-outside-toplevel
    from tests.pipeline.test_pipeline import pipeline_flags  # pylint: disable=import-outside-toplevel

    output = tmp_path_factory.mktemp("run1")
    result = run(pipeline_flags(clip_folder, synthetic_weights, output))
    return output, result

"""Transient or permanent: the classifier on the errors the real libraries raise, and the bounded retries."""
import errno
import socket
from typing import List

import botocore.exceptions
import pytest
import torch
from apache_beam.io.aws.clients.s3.messages import S3ClientError
from apache_beam.io.filesystem import BeamIOError
from google.api_core import exceptions as google_errors

from beam_pipeline import faults
from beam_pipeline.faults import PERMANENT, TRANSIENT, RetryPolicy, classify_error, retry_transient
from mimamo_ops.errors import CheckpointError, FaceStageError, VideoError


def s3_client_error(status: int, code: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


def wrapped(cause: BaseException, wrapper: BaseException) -> BaseException:
    """``wrapper`` raised while handling ``cause``, as library code re-raises."""
    try:
        try:
            raise cause
        except BaseException:
            raise wrapper  # pylint: disable=raise-missing-from
    except BaseException as error:  # pylint: disable=broad-except
        return error


TRANSIENT_ERRORS = [
    google_errors.ServiceUnavailable("GCS 503"),
    google_errors.TooManyRequests("GCS 429"),
    google_errors.InternalServerError("GCS 500"),
    google_errors.GatewayTimeout("GCS 504"),
    google_errors.DeadlineExceeded("deadline"),
    google_errors.RetryError("retries spent", cause=google_errors.ServiceUnavailable("503")),
    s3_client_error(503, "SlowDown"),
    s3_client_error(500, "InternalError"),
    s3_client_error(400, "RequestTimeout"),
    S3ClientError("service unavailable", 503),
    botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ConnectionResetError("reset by peer"),
    ConnectionRefusedError("refused"),
    TimeoutError("timed out"),
    socket.timeout("timed out"),
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EIO, "Input/output error"),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"),
    BeamIOError("Match operation failed", {"gs://b/x": google_errors.ServiceUnavailable("503")}),
    wrapped(botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), S3ClientError("no connection")),
]
PERMANENT_ERRORS = [
    VideoError("a.mp4: cannot open: Invalid data found when processing input"),
    FaceStageError("OpenFace crashed"),
    CheckpointError("w.pth: missing key 'classifier.1.bias'"),
    FileNotFoundError(errno.ENOENT, "No such file or directory"),
    PermissionError(errno.EACCES, "Permission denied"),
    ValueError("bad value"),
    google_errors.NotFound("404"),
    google_errors.Forbidden("403"),
    s3_client_error(403, "AccessDenied"),
    S3ClientError("not found", 404),
    BeamIOError("Delete operation failed", {"gs://b/x": google_errors.NotFound("404")}),
    RuntimeError("something else"),
    wrapped(VideoError("a.mp4: truncated"), RuntimeError("wrapper")),
]


@pytest.mark.parametrize("error", TRANSIENT_ERRORS, ids=lambda error: type(error).__name__)
def test_storage_network_disk_and_cuda_memory_errors_are_transient(error):
    assert classify_error(error) == TRANSIENT


@pytest.mark.parametrize("error", PERMANENT_ERRORS, ids=lambda error: type(error).__name__)
def test_format_content_and_missing_file_errors_are_permanent(error):
    assert classify_error(error) == PERMANENT


def test_a_wrapper_is_judged_by_its_cause():
    assert classify_error(wrapped(ConnectionResetError("reset"), RuntimeError("read failed"))) == TRANSIENT
    error = RuntimeError("decoding failed")
    error.__cause__ = OSError(errno.ENOSPC, "full")
    assert classify_error(error) == TRANSIENT


class Flaky:
    """Fails with the given errors in turn, then returns ``"done"``; records the delays it was given."""

    def __init__(self, errors: List[BaseException]):
        self.errors = list(errors)
        self.calls = 0
        self.delays: List[float] = []

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


POLICY = RetryPolicy(attempts=4, first_delay_s=1.0, max_delay_s=3.0)


def test_transient_failures_are_retried_with_growing_bounded_delays():
    call = Flaky([ConnectionResetError("1"), TimeoutError("2"), google_errors.ServiceUnavailable("3")])
    assert retry_transient(call, "op", POLICY, sleep=call.delays.append) == "done"
    assert call.calls == 4
    assert [0.5 <= call.delays[0] <= 1.0, 1.0 <= call.delays[1] <= 2.0, 1.5 <= call.delays[2] <= 3.0] == [True] * 3


def test_a_permanent_failure_is_raised_at_once():
    call = Flaky([VideoError("a.mp4: not a video")])
    with pytest.raises(VideoError, match="not a video"):
        retry_transient(call, "op", POLICY, sleep=call.delays.append)
    assert (call.calls, call.delays) == (1, [])


def test_the_last_transient_failure_is_raised_once_the_attempts_are_spent():
    call = Flaky([ConnectionResetError(str(n)) for n in range(10)])
    with pytest.raises(ConnectionResetError, match="^3$"):
        retry_transient(call, "op", POLICY, sleep=call.delays.append)
    assert call.calls == 4 and len(call.delays) == 3


def test_the_default_policies_are_bounded():
    for policy in (faults.IO_RETRY, faults.VIDEO_RETRY):
        worst_s = sum(min(policy.max_delay_s, policy.first_delay_s * 2 ** n) for n in range(policy.attempts - 1))
        assert 1 < policy.attempts <= 5 and worst_s <= 120, policy

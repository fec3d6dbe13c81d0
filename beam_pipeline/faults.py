"""Transient or permanent: which failures may pass when tried again, and bounded retries of those.

A failure is *transient* when a later try of the same input may succeed:

* storage and network errors: HTTP 408, 429 and 5xx answers (Cloud Storage's ``ServiceUnavailable``,
  ``TooManyRequests``, ``InternalServerError``, ``DeadlineExceeded``...; S3's 5xx, ``SlowDown`` and throttling,
  Beam's ``S3ClientError`` with such a code), refused, reset or timed-out connections (``ConnectionError``,
  ``TimeoutError``, ``socket.timeout``, botocore's and requests' connection and timeout errors);
* a full or failing disk: ``OSError`` with ``ENOSPC``, ``EDQUOT`` or ``EIO`` (a temporary copy, the cache);
* CUDA out of memory (``torch.OutOfMemoryError``; other processes may hold the GPU's memory for a while).

Everything else is *permanent*: the same input fails the same way (``VideoError``, ``FaceStageError``,
``CheckpointError``, ``FileNotFoundError``, ``PermissionError``, ``ValueError``, HTTP 403 and 404...). A wrapper
that says nothing itself (Beam's ``BeamIOError``, a bare ``RuntimeError`` or ``OSError``) is judged by what it
wraps (``exception_details``, ``__cause__``, ``__context__``).

Library types are recognised by their class names, so neither the Cloud clients, botocore nor torch is imported
here.

``retry_transient`` runs a call again after a transient failure, with exponential backoff, a bounded number of
times (``RetryPolicy``); a permanent failure, or the last transient one, is raised as it is. The storage clients
below Beam retry too (Beam's S3 reads for minutes, the Cloud Storage client for two minutes); these retries come
on top, for what they do not cover (an incomplete copy, a full temporary disk, an outage longer than theirs).
"""
import dataclasses
import errno
import logging
import random
import time
from typing import Callable, Iterator, Optional, TypeVar

__all__ = ["ERROR_KINDS", "IO_RETRY", "PERMANENT", "TRANSIENT", "VIDEO_RETRY", "RetryPolicy", "classify_error",
           "describe_error", "is_transient", "retry_transient"]

LOGGER = logging.getLogger(__name__)
TRANSIENT = "transient"
PERMANENT = "permanent"
ERROR_KINDS = (TRANSIENT, PERMANENT)  # the values of videos.error_kind

_TRANSIENT_HTTP_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EIO", "EAGAIN", "ETIMEDOUT", "ECONNRESET",
                                      "ECONNREFUSED", "ECONNABORTED", "EPIPE", "ENETDOWN", "ENETUNREACH",
                                      "ENETRESET", "EHOSTUNREACH", "EHOSTDOWN", "ENOBUFS")
    if hasattr(errno, name))
# Class names (anywhere in the MRO) of transient errors of the libraries under Beam's file systems and of torch.
_TRANSIENT_TYPE_NAMES = frozenset({
    "ConnectionError", "TimeoutError", "Timeout", "ReadTimeout", "ConnectTimeout",  # builtins, requests
    "ChunkedEncodingError", "ProtocolError", "IncompleteRead", "RemoteDisconnected",  # requests, urllib3, http
    "HTTPClientError", "ReadTimeoutError", "ConnectTimeoutError", "ResponseStreamingError",  # botocore
    "ServiceUnavailable", "TooManyRequests", "InternalServerError", "BadGateway", "GatewayTimeout",  # api_core
    "DeadlineExceeded", "RetryError", "TransportError",  # google.api_core, google.auth
    "OutOfMemoryError",  # torch.OutOfMemoryError: CUDA out of memory
})
# S3 error codes that mean "slow down" or "try again" whatever the HTTP status.
_TRANSIENT_S3_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                                 "RequestTimeout", "InternalError", "ServiceUnavailable", "TooManyRequests"})
# Types whose failure is the input's own, whatever they wrap.
_PERMANENT_TYPES = (ValueError, TypeError, LookupError, NotImplementedError, AssertionError, AttributeError)
_MAX_CHAIN = 16  # causes followed at most


def _type_names(error: BaseException) -> Iterator[str]:
    return (cls.__name__ for cls in type(error).__mro__)


def _http_status(error: BaseException) -> Optional[int]:
    """The HTTP status an error carries (``code``, ``status_code``, ``response.status_code``, botocore's
    ``response['ResponseMetadata']``), or None."""
    for name in ("code", "status_code"):
        value = getattr(error, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        value = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return value if isinstance(value, int) else None
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def _s3_error_code(error: BaseException) -> Optional[str]:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


def _classify_one(error: BaseException) -> Optional[str]:
    """TRANSIENT or PERMANENT when ``error`` itself says which, None when only what it wraps can tell."""
    details = getattr(error, "exception_details", None)
    if isinstance(details, dict) and details:  # Beam's BeamIOError: one error per path of a batch operation
        kinds = [classify_error(value) for value in details.values() if isinstance(value, BaseException)]
        if kinds:
            return TRANSIENT if TRANSIENT in kinds else PERMANENT
    if _s3_error_code(error) in _TRANSIENT_S3_CODES:
        return TRANSIENT
    status = _http_status(error)
    if status is not None:
        return TRANSIENT if status in _TRANSIENT_HTTP_STATUS else PERMANENT
    if any(name in _TRANSIENT_TYPE_NAMES for name in _type_names(error)):
        return TRANSIENT
    if isinstance(error, OSError) and error.errno is not None:
        return TRANSIENT if error.errno in _TRANSIENT_ERRNOS else PERMANENT
    if isinstance(error, RuntimeError) and "CUDA out of memory" in str(error):  # torch before OutOfMemoryError
        return TRANSIENT
    if isinstance(error, _PERMANENT_TYPES):
        return PERMANENT
    if any(cls.__module__.startswith("mimamo_ops") for cls in type(error).__mro__):
        return PERMANENT  # our own errors (mimamo_ops.errors) describe the input
    return None


def classify_error(error: BaseException) -> str:
    """``TRANSIENT`` or ``PERMANENT`` (module docstring); an error nothing in its chain explains is permanent."""
    seen = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(current))
        verdict = _classify_one(current)
        if verdict is not None:
            return verdict
        current = current.__cause__ or current.__context__
    return PERMANENT


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` may pass when tried again (``classify_error``)."""
    return classify_error(error) == TRANSIENT


def describe_error(error: BaseException) -> str:
    """``"<Type>: <message>"``, the message on one line (the ``error`` column's form)."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient failure is tried again.

    Attributes:
        attempts: tries in all, the first included (1: no retry).
        first_delay_s: seconds before the second try; each further delay doubles, up to ``max_delay_s``. Each
            delay is drawn from [delay/2, delay] so that many workers hit by one outage do not come back at once.
        max_delay_s: the longest delay in seconds.
    """

    attempts: int
    first_delay_s: float
    max_delay_s: float

    def delay_s(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the second try)."""
        ceiling = min(self.max_delay_s, self.first_delay_s * 2 ** (retry - 1))
        return random.uniform(ceiling / 2, ceiling)


# One read or write of a file (a video's copy, a weights download, a commit): 3 tries, about 2 + 8 s of waiting.
IO_RETRY = RetryPolicy(attempts=3, first_delay_s=4.0, max_delay_s=16.0)
# A whole video, after its reads were retried: one more try, 30 to 60 s later (CUDA memory held by another
# process, a storage outage longer than the reads' retries).
VIDEO_RETRY = RetryPolicy(attempts=2, first_delay_s=60.0, max_delay_s=60.0)

T = TypeVar("T")


def retry_transient(call: Callable[[], T], what: str, policy: Optional[RetryPolicy] = None,
                    sleep: Callable[[float], None] = time.sleep) -> T:
    """Returns ``call()``, trying again after a transient failure as ``policy`` says (default ``IO_RETRY``).

    Args:
        call: the operation; it must be safe to repeat.
        what: names the operation in the log (``"gs://b/v.mp4: copy"``).
        policy: the retry policy; None for the module's ``IO_RETRY`` as it is when called.
        sleep: waits the given seconds (injected in unit tests).

    Raises:
        The permanent failure at once, or the last transient one once the tries are spent.
    """
    policy = policy or IO_RETRY
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except Exception as error:  # pylint: disable=broad-except  # classified, then raised again or retried
            if attempt == policy.attempts or not is_transient(error):
                raise
            delay_s = policy.delay_s(attempt)
            LOGGER.warning("%s: %s (transient; try %d of %d failed), trying again in %.1f s", what,
                           describe_error(error), attempt, policy.attempts, delay_s)
            sleep(delay_s)
    raise AssertionError("unreachable")  # pragma: no cover  # the loop returns or raises

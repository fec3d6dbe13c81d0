"""Remote files for the pipeline: remote videos copied or streamed to the decoder, and a per-worker cache of the
weight files.

Everything goes through Beam's ``FileSystems``, so ``gs://``, ``s3://`` and local paths work alike (the scheme's
options, e.g. ``--s3_endpoint_url``, come from the pipeline options that Beam hands to ``FileSystems``).

* Videos (``open_video_source``): a remote video is copied into a temp file, removed when the block ends whatever
  happens inside it, when it fits both the disk budget (``--video_disk_budget_mb``; no budget: any size) and the
  temp folder's free space (less a margin); the copy is checked to be complete. Otherwise it is decoded straight
  from storage (``RemoteVideo``: ``FileSystems.open``'s seekable stream, opened once by the probe and once by the
  decode), so a worker with less free disk than a video's size still processes it, at the cost of reading
  it twice. The OpenFace binary reads local files only: with it a video that cannot be copied is refused. A
  storage error when a stream opens is retried (``faults.IO_RETRY``). One while reading, after the storage
  client's own retries, would look to the decoder like a cut or corrupt file; ``RemoteVideo`` records it, and
  ``storage_reads_checked`` fails the video with it (``OSError`` ``EIO``: transient, so a rerun reads it again)
  instead of keeping the rows of a partial read.
* Weights: a ``gs://``/``s3://`` weights file is downloaded once per machine into ``<cache>/remote/<key>/``
  (``<cache>`` as ``mimamo weights``: ``$MIMAMO_CACHE_DIR`` or the user cache), where ``<key>`` hashes the URI,
  size and modification time, so a changed object is fetched again. The processes of a machine take turns on
  one entry with an exclusive file lock (``fcntl.flock`` on ``<key>.lock`` beside it): the first downloads, the
  others wait and then find the file in place. A download is verified before it is renamed into place: strict
  ``weights_only`` load of keys and shapes (``mimamo_ops.weights.cache.verify_weights_file``) and, when pinned
  (``$MIMAMO_CHECKPOINT_SHA256``, ``$MIMAMO_BACKBONE_SHA256``), its SHA-256. Its SHA-256 is recorded beside it and
  checked again whenever another process reuses the cached file. Local weight paths are used where they are.

Reads that fail for a reason that may pass (``beam_pipeline.faults``: a 503, a reset connection, an incomplete
copy, a full temporary disk) are tried again with backoff (``faults.IO_RETRY``), on top of the storage clients'
own retries.
"""
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, Dict, Iterator, Optional, Tuple, Union

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_pipeline.beam_compat import use_anonymous_gcs_for_emulator
from beam_pipeline.faults import retry_transient
from beam_pipeline.storage import is_remote, local_path as _local_path

from mimamo_ops.decoding.sources import StreamSource
from mimamo_ops.errors import CheckpointError, WeightsFetchError
from mimamo_ops.model.checkpoints import BACKBONE, DESCRIPTIONS, MIMAMO, sha256_file
from mimamo_ops.model.predictor import ModelConfig
from mimamo_ops.runtime.cache_dirs import default_cache_dir
from mimamo_ops.weights.cache import SHA256_ENV, resolve_weights, verify_weights_file

__all__ = [
    "RemoteVideo",
    "is_remote",
    "open_local_copy",
    "open_video_source",
    "storage_reads_checked",
    "cache_remote_weights",
    "resolve_weight_uris",
    "weights_sha256",
    "localise_model_config",
]

LOGGER = logging.getLogger(__name__)
COPY_CHUNK_BYTES = 8 << 20  # streamed in 8 MiB pieces
FREE_SPACE_MARGIN_BYTES = 256 << 20  # a temp copy must leave this much free on its disk
REMOTE_CACHE_SUBDIR = "remote"
SOURCE_RECORD = "source.json"

_FETCH_LOCK = threading.Lock()
_FETCHED: Dict[str, Tuple[Path, str]] = {}  # uri -> (local file, SHA-256), for this process


def _stat(uri: str) -> Tuple[int, float]:
    """(size in bytes, last modification in seconds since the epoch) of one file, through ``FileSystems``."""
    matched = FileSystems.match([uri])[0].metadata_list
    if len(matched) != 1:
        raise FileNotFoundError(f"{uri}: no such file")
    return matched[0].size_in_bytes, matched[0].last_updated_in_seconds


def _copy_stream(source: BinaryIO, target: BinaryIO, digest=None) -> int:
    copied = 0
    for chunk in iter(lambda: source.read(COPY_CHUNK_BYTES), b""):
        target.write(chunk)
        if digest is not None:
            digest.update(chunk)
        copied += len(chunk)
    return copied


def _download(uri: str, target: Path, expected_bytes: int, digest=None) -> None:
    """Streams ``uri`` into ``target`` and checks that every byte arrived.

    Raises:
        OSError: (``EIO``, transient) the copy is shorter or longer than the object (``expected_bytes``).
    """
    with FileSystems.open(uri) as source, open(target, "wb") as stream:
        copied = _copy_stream(source, stream, digest)
    if copied != expected_bytes:
        raise OSError(errno.EIO, f"{uri}: copied {copied} bytes but the object has {expected_bytes}")


def _free_bytes(directory: str) -> int:
    return shutil.disk_usage(directory).free


def _check_room(uri: str, directory: str, size_bytes: int) -> None:
    free = _free_bytes(directory)
    if size_bytes + FREE_SPACE_MARGIN_BYTES > free:
        raise OSError(
            errno.ENOSPC, f"{uri}: {size_bytes} bytes do not fit in {directory} ({free} bytes free, "
            f"{FREE_SPACE_MARGIN_BYTES} kept free); point TMPDIR at a larger disk"
        )


class RemoteVideo(StreamSource):
    """A remote video decoded straight from storage: each ``open()`` is a new ``FileSystems`` read stream.

    Only the URI is held (``name``); the storage client and its options are those Beam gave this process's
    ``FileSystems``, and they never leave it (the isolated face stage reads the bytes through this process).

    Attributes:
        read_error: the first error a read or seek of any of its streams raised, else None.
    """

    def __init__(self, name: str):
        super().__init__(name)
        self.read_error: Optional[BaseException] = None

    def open(self) -> BinaryIO:
        stream = retry_transient(
            lambda: FileSystems.open(self.name, mime_type="application/octet-stream",
                                     compression_type=CompressionTypes.UNCOMPRESSED),
            f"{self.name}: open")
        return _ReadErrorRecorder(stream, self)


class _ReadErrorRecorder(io.RawIOBase):
    """A storage read stream that tells its ``RemoteVideo`` the first error it raised. A failed read then ends
    the stream (returns no bytes): raised into PyAV it would only be printed on stderr and dropped."""

    def __init__(self, stream: BinaryIO, video: RemoteVideo):
        super().__init__()
        self._stream = stream
        self._video = video

    def _record(self, error: BaseException) -> None:
        if self._video.read_error is None:
            self._video.read_error = error

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except Exception as error:  # pylint: disable=broad-except  # storage_reads_checked raises it
            self._record(error)
            return b""

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        try:
            return self._stream.seek(offset, whence)
        except Exception as error:
            self._record(error)
            raise

    def tell(self) -> int:
        return self._stream.tell()

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
        super().close()


@contextlib.contextmanager
def storage_reads_checked(source: Union[str, RemoteVideo]) -> Iterator[None]:
    """Fails the block with the storage's error when a read of ``source`` failed in it, whatever it returned or
    raised (the decoder sees a failed read as a damaged file).

    Raises:
        OSError: (``EIO``, transient) naming the video and the storage's error, raised from it.
    """
    def failure() -> OSError:
        error = source.read_error
        return OSError(errno.EIO, f"{source.name}: reading from storage failed: {type(error).__name__}: {error}")

    streamed = isinstance(source, RemoteVideo)
    try:
        yield
    except Exception:
        if streamed and source.read_error is not None:
            raise failure() from source.read_error
        raise
    if streamed and source.read_error is not None:
        raise failure() from source.read_error


@contextlib.contextmanager
def open_video_source(uri: str, disk_budget_bytes: Optional[int] = None, local_file_only: bool = False,
                      temp_dir: Optional[str] = None) -> Iterator[Union[str, RemoteVideo]]:
    """Yields what the decoder reads ``uri`` from: a local path, a temp copy, or a ``RemoteVideo`` (module
    docstring).

    Args:
        uri: a local path, ``file://`` URI or remote URI (``gs://``, ``s3://``).
        disk_budget_bytes: the largest remote video copied to the temp disk, in bytes; larger ones are streamed.
            None: any video that fits the free space.
        local_file_only: the face stage reads local files only (OpenFace): copy or refuse, never stream.
        temp_dir: where temp copies go; default the system temp folder (``$TMPDIR``).

    Yields:
        A local file path (with the file name of ``uri``: the demuxer may use the extension, and messages name
        the file), or a ``RemoteVideo`` named ``uri``.

    Raises:
        FileNotFoundError: the file does not exist.
        OSError: the storage failed, a copy came out incomplete (after the retries of ``faults.IO_RETRY``), or,
            with ``local_file_only``, the video does not fit the budget or the temp disk.
    """
    size_bytes = None
    if is_remote(uri) and (disk_budget_bytes is not None or not local_file_only):
        size_bytes, _ = retry_transient(lambda: _stat(uri), f"{uri}: stat")
        too_big = disk_budget_bytes is not None and size_bytes > disk_budget_bytes
        if local_file_only and too_big:
            raise OSError(errno.ENOSPC, f"{uri}: {size_bytes} bytes are over the disk budget of "
                                        f"{disk_budget_bytes} bytes, and OpenFace reads local files only")
        directory = temp_dir or tempfile.gettempdir()
        if not local_file_only and (too_big or size_bytes + FREE_SPACE_MARGIN_BYTES > _free_bytes(directory)):
            LOGGER.info("%s: %d bytes, %s; decoding it from storage", uri, size_bytes,
                        "over the disk budget" if too_big else f"more than {directory} has free")
            yield RemoteVideo(uri)
            return
    with open_local_copy(uri, temp_dir, size_bytes) as path:  # the local file itself, or a checked copy
        yield path


@contextlib.contextmanager
def open_local_copy(uri: str, temp_dir: Optional[str] = None, size_bytes: Optional[int] = None) -> Iterator[str]:
    """Yields a local path holding ``uri``: the path itself when local, else a temp copy removed afterwards.

    Args:
        uri: a local path, ``file://`` URI or remote URI (``gs://``, ``s3://``).
        temp_dir: where temp copies go; default the system temp folder (``$TMPDIR``).
        size_bytes: the remote object's size when the caller has just read it (the first try uses it; a try
            again reads it afresh), else None.

    Yields:
        A local file path with the same file name as ``uri``.

    Raises:
        FileNotFoundError: the file does not exist.
        OSError: the copy would not fit on the temp disk, or it came out incomplete (after the retries of
            ``faults.IO_RETRY``), or the storage failed.
    """
    if not is_remote(uri):
        path = _local_path(uri)
        if not os.path.lexists(path):
            raise FileNotFoundError(f"{uri}: no such file")
        yield path
        return
    directory = tempfile.mkdtemp(prefix="mimamo-video-", dir=temp_dir)
    try:
        local_path = Path(directory) / (os.path.basename(uri) or "video")

        known_sizes = [size_bytes] if size_bytes is not None else []

        def copy() -> int:
            size = known_sizes.pop() if known_sizes else _stat(uri)[0]
            _check_room(uri, directory, size)
            _download(uri, local_path, size)
            return size

        copied = retry_transient(copy, f"{uri}: copy")
        LOGGER.debug("%s: %d bytes copied to %s", uri, copied, local_path)
        yield str(local_path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _pinned_sha256(kind: str) -> Optional[str]:
    value = os.environ.get(SHA256_ENV[kind], "").strip().lower()
    return value or None


def _cache_key(uri: str, size_bytes: int, modified_s: float) -> str:
    return hashlib.sha256(f"{uri}\n{size_bytes}\n{modified_s!r}".encode("utf-8")).hexdigest()[:32]


def _read_cached(entry: Path, uri: str) -> Optional[Tuple[Path, str]]:
    """The cached file of ``entry`` and its SHA-256 when the record matches the file on disk, else None."""
    record_path = entry / SOURCE_RECORD
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
        cached = entry / record["file"]
        recorded_sha256 = record["sha256"]
    except (ValueError, KeyError, TypeError) as error:
        LOGGER.warning("%s: unreadable cache record (%s); fetching %s again", record_path, error, uri)
        return None
    if not cached.is_file():
        return None
    actual = sha256_file(cached)
    if actual != recorded_sha256:
        LOGGER.warning("%s: SHA-256 %s differs from the recorded %s; fetching %s again", cached, actual,
                       recorded_sha256, uri)
        return None
    return cached, actual


def _fetch_into_cache(uri: str, kind: str, entry: Path, size_bytes: int, modified_s: float) -> Tuple[Path, str]:
    """Downloads ``uri`` next to ``entry``, verifies it and renames it into ``entry`` (atomic per file)."""
    entry.mkdir(parents=True, exist_ok=True)
    _check_room(uri, str(entry), size_bytes)
    name = os.path.basename(uri.rstrip("/")) or "weights"
    fd, tmp_name = tempfile.mkstemp(dir=entry, prefix=f".{name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        _download(uri, tmp, size_bytes, digest)
        try:
            sha256 = verify_weights_file(tmp, kind, _pinned_sha256(kind))
        except (CheckpointError, WeightsFetchError) as error:  # name the URI, not the temp file
            raise type(error)(str(error).replace(str(tmp), uri)) from None
        if sha256 != digest.hexdigest():
            raise WeightsFetchError(f"{uri}: the cached copy changed while it was verified")
        final = entry / name
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    record = {"uri": uri, "kind": kind, "file": name, "size_bytes": size_bytes, "modified_s": modified_s,
              "sha256": sha256}
    fd, record_tmp = tempfile.mkstemp(dir=entry, prefix=f".{SOURCE_RECORD}.", suffix=".part")
    with os.fdopen(fd, "w") as stream:
        json.dump(record, stream, indent=2, sort_keys=True)
    os.replace(record_tmp, entry / SOURCE_RECORD)
    LOGGER.info("%s: %s fetched to %s (sha256 %s)", uri, DESCRIPTIONS[kind], final, sha256)
    return final, sha256


@contextlib.contextmanager
def _machine_lock(entry: Path, uri: str) -> Iterator[None]:
    """Holds the exclusive file lock of a cache entry (``<entry>.lock``), shared by every process of the
    machine; waits while another process holds it (the lock goes with its process, also when it is killed)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(entry.parent / f"{entry.name}.lock", "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            LOGGER.info("%s: another process is fetching it; waiting", uri)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def cache_remote_weights(uri: str, kind: str, cache_dir: Optional[str] = None) -> Tuple[Path, str]:
    """Returns a verified local copy of a remote weights file, downloading it at most once per machine.

    Threads of one process share one download (a thread lock); processes on one machine share one download too
    (a file lock on the cache entry, module docstring).

    Args:
        uri: ``gs://``, ``s3://`` or any other ``FileSystems`` URI of the weights file.
        kind: ``mimamo_ops.model.checkpoints.MIMAMO`` or ``BACKBONE``.
        cache_dir: the cache root; default ``mimamo_ops.runtime.cache_dirs.default_cache_dir()``.

    Returns:
        (local path, hex SHA-256 of the file).

    Raises:
        FileNotFoundError: no object at ``uri``.
        CheckpointError: the file is unreadable, unsafe or not that model's weights.
        WeightsFetchError: its SHA-256 differs from the pinned one.
        OSError: the download failed, came out incomplete or does not fit on the cache disk.
    """
    use_anonymous_gcs_for_emulator()
    with _FETCH_LOCK:
        if uri in _FETCHED and _FETCHED[uri][0].is_file():
            return _FETCHED[uri]
        size_bytes, modified_s = retry_transient(lambda: _stat(uri), f"{uri}: reading its size")
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        entry = root / REMOTE_CACHE_SUBDIR / _cache_key(uri, size_bytes, modified_s)
        cached = _read_cached(entry, uri)
        if cached is None:
            with _machine_lock(entry, uri):
                cached = _read_cached(entry, uri)  # fetched by another process while this one waited
                if cached is None:
                    cached = retry_transient(lambda: _fetch_into_cache(uri, kind, entry, size_bytes, modified_s),
                                             f"{uri}: download")
        pinned = _pinned_sha256(kind)
        if pinned and cached[1] != pinned:
            raise WeightsFetchError(f"{uri}: SHA-256 {cached[1]} differs from the pinned {pinned}")
        LOGGER.debug("%s: using %s", uri, cached[0])
        _FETCHED[uri] = cached
        return cached


def resolve_weight_uris(checkpoint: Optional[str], backbone: Optional[str]) -> Tuple[str, str]:
    """Chooses the weight files on the launching machine; remote ones are fetched and verified there first.

    Checking them before any worker starts turns a wrong URI or a wrong file into an error at submission.

    Args:
        checkpoint: the MIMAMO checkpoint (local path or URI), or None for the cached official file.
        backbone: the ResNet-50 FER+ weights (local path or URI), or None for the cached official file.

    Returns:
        (checkpoint, backbone): remote URIs as given, local ones as existing paths.

    Raises:
        As :func:`cache_remote_weights` and ``mimamo_ops.weights.cache.resolve_weights``.
    """
    given = {MIMAMO: checkpoint, BACKBONE: backbone}
    local = dict(given)
    for kind, uri in given.items():
        if uri and is_remote(uri):
            local[kind] = str(cache_remote_weights(uri, kind)[0])
    resolved = dict(zip((MIMAMO, BACKBONE), resolve_weights(local[MIMAMO], local[BACKBONE])))
    return tuple(  # type: ignore[return-value]
        given[kind] if given[kind] and is_remote(given[kind]) else str(resolved[kind]) for kind in (MIMAMO, BACKBONE)
    )


_LOCAL_SHA256: Dict[Tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> hex digest, for this process


def weights_sha256(uri: str, kind: str) -> str:
    """Hex SHA-256 of a weights file, local or remote (remote ones through the cache).

    A local file is hashed once per process while its size and modification time stay the same (a resumable run
    asks once per batch).
    """
    if is_remote(uri):
        return cache_remote_weights(uri, kind)[1]
    path = _local_path(uri)
    status = os.stat(path)
    key = (os.path.abspath(path), status.st_size, status.st_mtime_ns)
    if key not in _LOCAL_SHA256:
        _LOCAL_SHA256[key] = sha256_file(path)
    return _LOCAL_SHA256[key]


def localise_model_config(config: ModelConfig) -> ModelConfig:
    """Returns ``config`` with remote weight URIs replaced by verified local copies (once per process)."""
    checkpoint, backbone = config.checkpoint_path, config.backbone_path
    if is_remote(checkpoint):
        checkpoint = str(cache_remote_weights(checkpoint, MIMAMO)[0])
    if is_remote(backbone):
        backbone = str(cache_remote_weights(backbone, BACKBONE)[0])
    return dataclasses.replace(config, checkpoint_path=checkpoint, backbone_path=backbone)

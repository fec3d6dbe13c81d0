"""Files under an output folder, local or remote, through Beam's ``FileSystems``: whole-or-nothing writes, reads,
listings and deletes that the commits, the tables, the run record and the lock share.

* A local file is written to a hidden temporary name in its folder, flushed to disk and renamed over the target
  (``os.replace``, atomic within a file system); the folder's entry is flushed too, so that a power cut keeps it.
* A ``gs://`` or ``s3://`` object is written by one upload, which makes it appear whole when it completes
  (Cloud Storage's resumable upload, S3's multipart upload), or not at all.

So a reader never sees a part-written file, and a writer killed at any moment leaves the old file (or none) and
at most a hidden temporary file (local), which :func:`remove_temporary_files` clears.
"""
import contextlib
import os
import shutil
import tempfile
from typing import Iterator, List, NamedTuple, Sequence

from apache_beam.io.filesystems import FileSystems

__all__ = ["StoredFile", "TEMPORARY_SUFFIX", "atomic_local_file", "delete_files", "is_remote", "list_files",
           "local_path", "read_bytes", "remove_temporary_files", "write_atomically"]

TEMPORARY_SUFFIX = ".tmp"  # hidden local temporary files: ".<name>.<random>.tmp"
UPLOAD_CHUNK_BYTES = 8 << 20


class StoredFile(NamedTuple):
    """A listed file: its path or URI, size in bytes and last modification (seconds since the epoch, the storage
    server's clock for remote files)."""

    path: str
    size_bytes: int
    modified_s: float


def is_remote(uri: str) -> bool:
    """True for a URI with a scheme other than ``file`` (e.g. ``gs://``, ``s3://``)."""
    return FileSystems.get_scheme(uri) not in (None, "file")


def local_path(uri: str) -> str:
    """A local path or ``file://`` URI as a path."""
    return uri[len("file://"):] if uri.startswith("file://") else uri


def _sync_directory(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_local_file(uri: str) -> Iterator[str]:
    """Yields a local path to write; when the block ends without an error it becomes ``uri``, whole.

    Local ``uri``: a hidden temporary file in the same folder, flushed and renamed over ``uri``. Remote ``uri``:
    a temporary file in the system temp folder, uploaded in one upload. On an error nothing is left.
    """
    remote = is_remote(uri)
    directory = tempfile.gettempdir() if remote else os.path.dirname(os.path.abspath(local_path(uri)))
    if not remote:
        os.makedirs(directory, exist_ok=True)
    name = os.path.basename(uri.rstrip("/")) or "file"
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=TEMPORARY_SUFFIX)
    os.close(descriptor)
    try:
        yield temporary
        if remote:
            with open(temporary, "rb") as source, FileSystems.create(uri) as target:
                shutil.copyfileobj(source, target, UPLOAD_CHUNK_BYTES)
        else:
            with open(temporary, "rb+") as written:
                os.fsync(written.fileno())
            os.replace(temporary, local_path(uri))
            _sync_directory(directory)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def write_atomically(uri: str, payload: bytes) -> None:
    """Writes ``payload`` to ``uri`` whole or not at all (module docstring)."""
    if is_remote(uri):
        with FileSystems.create(uri) as handle:
            handle.write(payload)
        return
    with atomic_local_file(uri) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(payload)


def read_bytes(uri: str) -> bytes:
    """The whole content of a file."""
    with FileSystems.open(uri) as handle:
        return handle.read()


def list_files(pattern: str) -> List[StoredFile]:
    """The files (not folders) a ``FileSystems`` glob matches (``*`` stays within a path segment), sorted."""
    found = []
    for item in FileSystems.match([pattern])[0].metadata_list:
        if not is_remote(item.path) and os.path.isdir(item.path):
            continue
        found.append(StoredFile(item.path, int(item.size_in_bytes), float(item.last_updated_in_seconds or 0.0)))
    return sorted(found)


def delete_files(paths: Sequence[str]) -> None:
    """Deletes the given files; one that is already gone is not an error."""
    if not paths:
        return
    if not is_remote(paths[0]):
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(local_path(path))
        return
    FileSystems.delete(list(paths))


def remove_temporary_files(folder: str) -> List[str]:
    """Removes the hidden temporary files a killed writer left anywhere under a local ``folder``; returns them.

    Remote folders have none (an upload that did not complete leaves no object).
    """
    if is_remote(folder) or not os.path.isdir(local_path(folder)):
        return []
    removed = []
    for root, _, names in os.walk(local_path(folder)):
        for name in names:
            if name.startswith(".") and name.endswith(TEMPORARY_SUFFIX):
                path = os.path.join(root, name)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed.append(path)
    return removed

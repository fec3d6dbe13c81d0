"""Turning input arguments into video URIs through Beam's ``FileSystems`` (local, ``gs://``, ``s3://``).

An input is one of:

* a glob (``*``, ``?`` or ``[``): every file it matches, whatever the extension, and every other entry it
  matches whose name has a video extension (a broken link, a directory named ``x.mp4``);
* a list file (``.txt``, ``.lst``, ``.list``): one input per line, blank lines and ``#`` comments skipped; each
  line is itself a file, directory or glob (list files do not nest). A relative line is resolved against the
  list file's folder; a line with a scheme (``gs://...``) is taken as it is;
* a directory (a local directory, or a remote prefix ending in ``/``): the entries directly inside it whose
  name has one of the video extensions (case-insensitive, not recursive, as the seed's directory mode);
* otherwise a single file, taken whatever its extension.

Nothing is dropped silently: every input, list line and match becomes one :class:`InputMatch`, either a
candidate video (``error`` None) or an entry that cannot be a video with the reason (a missing path or list
line, a glob or directory without videos, a broken link, a directory, a special or unreadable file). Local
entries are de-duplicated by their resolved path (``os.path.realpath``), remote ones by their URI.
"""
import glob
import os
import posixpath
import stat
import typing
from typing import Iterable, Iterator, List, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from beam_pipeline.flags import DEFAULT_VIDEO_EXTENSIONS

__all__ = [
    "DEFAULT_VIDEO_EXTENSIONS",
    "LIST_FILE_EXTENSIONS",
    "InputMatch",
    "dedup_key",
    "pick_first_match",
    "expand_input",
    "expand_inputs",
]

LIST_FILE_EXTENSIONS = (".txt", ".lst", ".list")
_GLOB_CHARACTERS = frozenset("*?[")
# error_stage of the videos row: the entry is missing ("match") or exists but cannot be read as a file ("read").
MATCH_STAGE = "match"
READ_STAGE = "read"


class InputMatch(typing.NamedTuple):
    """One entry an input argument stands for (a Beam row: it goes through the de-duplicating shuffle).

    Attributes:
        uri: the video's URI as found (a local path or a URI with a scheme), or the input, list line or
            entry that cannot be a video.
        error: None for a candidate video; else ``"<ExceptionType>: <uri>: <reason>"``.
        error_stage: ``match`` (nothing there) or ``read`` (there, but not a readable file); None when
            ``error`` is None.
        error_kind: ``transient`` when the listing failed on an error that may pass (``beam_pipeline.faults``),
            else None (a permanent failure, or no error).
    """

    uri: str
    error: Optional[str] = None
    error_stage: Optional[str] = None
    error_kind: Optional[str] = None


beam.coders.registry.register_coder(InputMatch, beam.coders.RowCoder)


def _is_glob(uri: str) -> bool:
    return any(character in _GLOB_CHARACTERS for character in uri)


def _is_local(uri: str) -> bool:
    return FileSystems.get_scheme(uri) is None


def _has_extension(uri: str, extensions: Sequence[str]) -> bool:
    lowered = uri.lower()
    return any(lowered.endswith(extension.lower()) for extension in extensions)


def _missing(uri: str, reason: str) -> InputMatch:
    return InputMatch(uri, f"FileNotFoundError: {uri}: {reason}", MATCH_STAGE)


def _unreadable(uri: str, error_type: str, reason: str) -> InputMatch:
    return InputMatch(uri, f"{error_type}: {uri}: {reason}", READ_STAGE)


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _check_local_file(path: str) -> InputMatch:
    """A local path that should be a video file: a candidate, or why it cannot be read."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return _missing(path, f"broken symbolic link (it points to {os.readlink(path)!r}, which does not "
                                  "exist)")
        return _missing(path, "no such file or directory")
    except OSError as error:  # PermissionError: a folder on the way may not be searched by this user
        return _unreadable(path, type(error).__name__, f"cannot be looked up ({error.strerror})")
    if stat.S_ISDIR(mode):
        return _unreadable(path, "IsADirectoryError", "is a directory, not a video file")
    if not stat.S_ISREG(mode):
        return _unreadable(path, "OSError", f"is {_file_kind(mode)}, not a regular file")
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as error:  # PermissionError for a file this user may not read, EIO, ...
        return _unreadable(path, type(error).__name__, f"cannot be opened for reading ({error.strerror})")
    return InputMatch(path)


def _local_glob(pattern: str, video_extensions: Sequence[str]) -> List[InputMatch]:
    matches = []
    for path in sorted(glob.glob(pattern)):
        if os.path.isdir(path) and not _has_extension(path, video_extensions):
            continue  # a folder the glob happens to match is not an input; one named like a video is
        matches.append(_check_local_file(path))
    return matches


def _remote_files(pattern: str) -> List[str]:
    """Sorted URIs of the objects ``pattern`` matches on a remote file system."""
    return sorted(item.path for item in FileSystems.match([pattern])[0].metadata_list)


def _expand_glob(pattern: str, video_extensions: Sequence[str]) -> List[InputMatch]:
    if _is_local(pattern):
        matches = _local_glob(pattern, video_extensions)
    else:
        matches = [InputMatch(uri) for uri in _remote_files(pattern)]
    return matches or [_missing(pattern, "the glob matches no file")]


def _expand_directory(uri: str, video_extensions: Sequence[str]) -> List[InputMatch]:
    if _is_local(uri):
        names = sorted(entry.name for entry in os.scandir(uri))
        matches = [_check_local_file(os.path.join(uri, name)) for name in names
                   if _has_extension(name, video_extensions)]
    else:
        listed = _remote_files(FileSystems.join(uri.rstrip("/"), "*"))
        matches = [InputMatch(path) for path in listed if _has_extension(path, video_extensions)]
    return matches or [_missing(uri, f"no file with a video extension ({', '.join(video_extensions)}) in this "
                                     "directory")]


def _expand_one(uri: str, video_extensions: Sequence[str]) -> List[InputMatch]:
    if _is_glob(uri):
        return _expand_glob(uri, video_extensions)
    if (_is_local(uri) and os.path.isdir(uri)) or (not _is_local(uri) and uri.endswith("/")):
        return _expand_directory(uri, video_extensions)
    if _is_local(uri):
        return [_check_local_file(uri)]
    if not FileSystems.exists(uri):
        return [_missing(uri, "no such file")]
    return [InputMatch(uri)]


def _resolve_line(line: str, list_uri: str) -> str:
    """A list line as a URI: schemes and absolute paths as they are, relative ones against the list's folder."""
    if not _is_local(line) or os.path.isabs(line):
        return line
    if _is_local(list_uri):
        return os.path.join(os.path.dirname(os.path.abspath(list_uri)), line)
    return posixpath.join(posixpath.dirname(list_uri), line)


def _read_list_file(uri: str) -> List[str]:
    with FileSystems.open(uri) as handle:
        text = handle.read().decode("utf-8")
    return [line.strip() for line in text.splitlines()]


def _expand_list(uri: str, video_extensions: Sequence[str]) -> Iterator[InputMatch]:
    if not FileSystems.exists(uri):
        yield _missing(uri, "no such list file")
        return
    try:
        lines = _read_list_file(uri)
    except (OSError, UnicodeDecodeError) as error:
        yield _unreadable(uri, type(error).__name__, f"cannot read this list file ({error})")
        return
    for number, line in enumerate(lines, start=1):
        if not line or line.startswith("#"):
            continue
        for match in _expand_one(_resolve_line(line, uri), video_extensions):
            if match.error is not None:  # say where the line came from
                match = InputMatch(match.uri, f"{match.error} (line {number} of {uri})", match.error_stage)
            yield match


def expand_input(uri: str, video_extensions: Sequence[str] = DEFAULT_VIDEO_EXTENSIONS) -> Iterator[InputMatch]:
    """Yields the entries that one input argument stands for (rules in the module docstring).

    Args:
        uri: a file, directory, glob or list file; a local path or a URI with a scheme.
        video_extensions: extensions (with the dot) picked up in directories.

    Yields:
        One :class:`InputMatch` per video, list line or entry, sorted within each match; at least one.
    """
    if not _is_glob(uri) and _has_extension(uri, LIST_FILE_EXTENSIONS):
        yield from _expand_list(uri, video_extensions)
        return
    yield from _expand_one(uri, video_extensions)


def dedup_key(uri: str) -> str:
    """The identity of an entry: the resolved path for a local one (links and ``./`` resolved), else the URI."""
    return os.path.realpath(uri) if _is_local(uri) else uri


def expand_inputs(uris: Sequence[str], video_extensions: Sequence[str] = DEFAULT_VIDEO_EXTENSIONS
                  ) -> List[InputMatch]:
    """Expands several inputs on the launching machine, one entry per :func:`dedup_key` (first one kept).

    Used by ``mimamo run`` to size its progress bar; the pipeline itself expands inputs on the workers and
    keeps, among entries with the same key, the one given by the resolved path itself, else the smallest URI.
    """
    seen = {}
    for uri in uris:
        for match in expand_input(uri, video_extensions):
            seen.setdefault(dedup_key(match.uri), match)
    return list(seen.values())


def pick_first_match(matches: Iterable[InputMatch]) -> InputMatch:
    """Among entries with the same resolved path, the one given by that path, else the smallest URI.

    The choice does not depend on the order in which the runner delivers them.
    """
    return min(matches, key=lambda match: (match.uri != dedup_key(match.uri), match.uri))

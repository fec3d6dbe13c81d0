"""Turning input arguments into video URIs through Beam's ``FileSystems`` (local, ``gs://``, ``s3://``).

An input is one of:

* a glob (``*``, ``?`` or ``[``): every file it matches, whatever the extension;
* a list file (``.txt``, ``.lst``, ``.list``): one input per line, blank lines and ``#`` comments skipped; each
  line is itself a file, directory or glob (list files do not nest);
* a directory (a local directory, or a remote prefix ending in ``/``): the files directly inside it whose
  extension is one of the video extensions (case-insensitive, not recursive, as the seed's directory mode);
* otherwise a single file, taken whatever its extension.
"""
import os
from typing import Iterator, List, Sequence

from apache_beam.io.filesystems import FileSystems

from beam_pipeline.flags import DEFAULT_VIDEO_EXTENSIONS

__all__ = ["DEFAULT_VIDEO_EXTENSIONS", "LIST_FILE_EXTENSIONS", "expand_input", "expand_inputs"]

LIST_FILE_EXTENSIONS = (".txt", ".lst", ".list")
_GLOB_CHARACTERS = frozenset("*?[")


def _is_glob(uri: str) -> bool:
    return any(character in _GLOB_CHARACTERS for character in uri)


def _has_extension(uri: str, extensions: Sequence[str]) -> bool:
    lowered = uri.lower()
    return any(lowered.endswith(extension.lower()) for extension in extensions)


def _match_files(pattern: str) -> List[str]:
    """Returns the sorted file paths that ``pattern`` matches (directories left out)."""
    metadata = FileSystems.match([pattern])[0].metadata_list
    return sorted(item.path for item in metadata if not os.path.isdir(item.path))


def _read_list_file(uri: str) -> List[str]:
    with FileSystems.open(uri) as handle:
        text = handle.read().decode("utf-8")
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _expand_one(uri: str, video_extensions: Sequence[str]) -> List[str]:
    if _is_glob(uri):
        matched = _match_files(uri)
        if not matched:
            raise FileNotFoundError(f"{uri}: the glob matches no file")
        return matched
    local_directory = FileSystems.get_scheme(uri) is None and os.path.isdir(uri)
    if local_directory or uri.endswith("/"):
        listed = _match_files(FileSystems.join(uri.rstrip("/"), "*"))
        videos = [path for path in listed if _has_extension(path, video_extensions)]
        if not videos:
            raise FileNotFoundError(
                f"{uri}: no file with a video extension ({', '.join(video_extensions)}) in this directory"
            )
        return videos
    if not FileSystems.exists(uri):
        raise FileNotFoundError(f"{uri}: no such file or directory")
    return [uri]


def expand_input(uri: str, video_extensions: Sequence[str] = DEFAULT_VIDEO_EXTENSIONS) -> Iterator[str]:
    """Yields the video URIs that one input argument stands for (rules in the module docstring).

    Args:
        uri: a file, directory, glob or list file; a local path or a URI with a scheme.
        video_extensions: extensions (with the dot) picked up in directories.

    Yields:
        Video URIs, sorted within each match.

    Raises:
        FileNotFoundError: the input, a glob or a line of a list file matches nothing; the message names it.
    """
    if not _is_glob(uri) and _has_extension(uri, LIST_FILE_EXTENSIONS):
        if not FileSystems.exists(uri):
            raise FileNotFoundError(f"{uri}: no such list file")
        for line in _read_list_file(uri):
            yield from _expand_one(line, video_extensions)
        return
    yield from _expand_one(uri, video_extensions)


def expand_inputs(uris: Sequence[str], video_extensions: Sequence[str] = DEFAULT_VIDEO_EXTENSIONS) -> List[str]:
    """Expands several inputs on the launching machine, dropping duplicates (first occurrence kept).

    Used by ``mimamo run`` to size its progress bar; the pipeline itself expands inputs on the workers.

    Raises:
        FileNotFoundError: as :func:`expand_input`.
    """
    seen = {}
    for uri in uris:
        for video in expand_input(uri, video_extensions):
            seen.setdefault(video, None)
    return list(seen)

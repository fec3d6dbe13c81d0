"""From what a user names to distinct video URIs spread over the workers.

* ``MatchVideos``: input arguments as ``mimamo run`` takes them (files, folders, globs, list files; local,
  ``gs://``, ``s3://``) -> ``.videos`` (URIs) and ``.failed`` (a ``failed`` ``VideoRow`` for every entry that
  cannot be a video: a missing path, a list line naming nothing, a broken link, ...; ``beam_pipeline.inputs``).
* ``DistinctVideoUris``: URIs, ``FileMetadata`` (``fileio.MatchFiles``) or ``ReadableFile`` -> one URI per file
  (a local file named several ways is one), reshuffled so that videos spread over workers.
"""
import typing
from typing import Iterator, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.filesystem import FileMetadata
from apache_beam.metrics import Metrics

from beam_pipeline.faults import PERMANENT, classify_error, retry_transient
from beam_pipeline.flags import DEFAULT_VIDEO_EXTENSIONS
from beam_pipeline.inputs import InputMatch, dedup_key, expand_input, pick_first_match
from beam_pipeline.metrics import METRICS_NAMESPACE
from beam_pipeline.rows import VideoRow, failed_video_row, with_row_type

__all__ = ["DistinctVideoUris", "MatchVideos", "MatchedVideos", "to_video_uri"]

_FAILED_TAG = "failed"


class MatchedVideos(typing.NamedTuple):
    """What ``MatchVideos`` returns: ``videos`` (``str`` URIs, distinct) and ``failed`` (``VideoRow``)."""

    videos: beam.PCollection
    failed: beam.PCollection


def to_video_uri(element) -> str:
    """A video URI from a string, a ``FileMetadata`` (``fileio.MatchFiles``/``MatchAll``) or a ``ReadableFile``
    (``fileio.ReadMatches``)."""
    if isinstance(element, str):
        return element
    if isinstance(element, FileMetadata):
        return element.path
    metadata = getattr(element, "metadata", None)
    if isinstance(metadata, FileMetadata):
        return metadata.path
    raise TypeError(f"expected a video URI (str), a FileMetadata or a ReadableFile; got {type(element).__name__}")


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class _ExpandInputsDoFn(beam.DoFn):
    """Input argument -> ``(dedup_key, InputMatch)`` for every entry it stands for (``beam_pipeline.inputs``)."""

    def __init__(self, video_extensions: Sequence[str]):
        self._video_extensions = tuple(video_extensions)

    def process(self, uri: str) -> Iterator[Tuple[str, InputMatch]]:
        try:
            matches = retry_transient(lambda: list(expand_input(uri, self._video_extensions)), f"{uri}: listing")
        except (OSError, ValueError) as error:  # a FileSystems/IO error while listing the input
            matches = [InputMatch(uri, _describe(error), "match", classify_error(error))]
        for match in matches:
            yield dedup_key(match.uri), match


class _SplitMatchesDoFn(beam.DoFn):
    """``(key, InputMatch)`` -> the video URI, or a ``failed`` ``VideoRow`` on ``failed`` with the reason."""

    def __init__(self):
        self._failed = Metrics.counter(METRICS_NAMESPACE, "videos_failed")

    def process(self, element: Tuple[str, InputMatch]) -> Iterator:
        _, match = element
        if match.error is None:
            yield match.uri
            return
        self._failed.inc()
        yield beam.pvalue.TaggedOutput(_FAILED_TAG, failed_video_row(match.uri, match.error_stage, match.error,
                                                                     error_kind=match.error_kind or PERMANENT))


def _key_match(match: InputMatch) -> Tuple[str, InputMatch]:
    return dedup_key(match.uri), match


class MatchVideos(beam.PTransform):
    """Input arguments (``str``) -> distinct video URIs and a ``failed`` row for every entry that is no video.

    Every input, list line and match gives one entry; entries with the same resolved local path (or the same
    remote URI) are one (``beam_pipeline.inputs``). Returns ``MatchedVideos``.

    Example::

        matched = p | beam.Create(["videos/", "more.txt"]) | MatchVideos()
        result = matched.videos | PredictValenceArousal()

    Args:
        video_extensions: extensions (with the dot) picked up in folders, case-insensitive.
        entries: inputs already expanded on the launcher (a resumable run's batch); used instead of expanding
            the input PCollection (which must then be the pipeline itself), so each keeps its reason.
    """

    def __init__(self, video_extensions: Sequence[str] = DEFAULT_VIDEO_EXTENSIONS,
                 entries: Optional[Sequence[InputMatch]] = None):
        super().__init__()
        self._video_extensions = tuple(video_extensions)
        self._entries = None if entries is None else list(entries)

    def expand(self, arguments):  # a MatchedVideos (unannotated: Beam warns on it)
        if self._entries is None:
            keyed = (
                arguments
                | "ExpandInputs" >> beam.ParDo(_ExpandInputsDoFn(self._video_extensions)).with_output_types(
                    Tuple[str, InputMatch])
                | "DropDuplicateVideos" >> beam.CombinePerKey(pick_first_match)
            )
        else:
            keyed = (arguments
                     | "CreateEntries" >> beam.Create(self._entries).with_output_types(InputMatch)
                     | "KeyEntries" >> beam.Map(_key_match).with_output_types(Tuple[str, InputMatch]))
        split = keyed | "SplitMatches" >> beam.ParDo(_SplitMatchesDoFn()).with_outputs(_FAILED_TAG, main="uris")
        failed = with_row_type(split[_FAILED_TAG], VideoRow, "TypeFailedRows")
        return MatchedVideos(split.uris | "SpreadVideos" >> beam.Reshuffle(), failed)


def _pick_first(uris) -> str:
    """Among URIs of the same resolved local path, the one given by that path, else the smallest."""
    return min(uris, key=lambda uri: (uri != dedup_key(uri), uri))


def _key_by_resolved_path(uri: str) -> Tuple[str, str]:
    return dedup_key(uri), uri


class DistinctVideoUris(beam.PTransform):
    """URIs (``str``), ``FileMetadata`` or ``ReadableFile`` -> one URI per file, spread over the workers.

    A local file given several ways (relative, absolute, through a link) is one video (``dedup_key``); the
    result is reshuffled, so that the videos of one input bundle run on several workers.
    """

    def expand(self, inputs):
        return (
            inputs
            | "ToVideoUris" >> beam.Map(to_video_uri).with_output_types(str)
            | "KeyByResolvedPath" >> beam.Map(_key_by_resolved_path).with_output_types(Tuple[str, str])
            | "DropDuplicateUris" >> beam.CombinePerKey(_pick_first)
            | "KeepUris" >> beam.Values()
            | "SpreadVideos" >> beam.Reshuffle()
        )

"""Per-video commits: each video's rows are written under ``<output>/_videos/<video_id>/`` as soon as the video
is done, from inside the pipeline, on every runner and for local, ``gs://`` and ``s3://`` outputs.

Layout, for a video ``V`` (its ``video_id``, ``rows.compute_video_id``)::

    _videos/V/frames.<N>.parquet    its N FrameRow rows (ok videos)
    _videos/V/snippets.<N>.parquet  its N SnippetRow rows (keep_intermediates)
    _videos/V/video.parquet         its VideoRow: the commit record (ok, no_face, a permanent failure); its
                                    key-value metadata names the data files it commits
    _videos/V/video.retry.parquet   the record of a transient failure: committed, and run again by a rerun

The row counts in the names let the tables be planned in rows from one listing, without opening a file.

Every file is written whole or not at all (``beam_pipeline.storage``) and the record goes last, after the data
files are complete: a video is committed exactly when its record exists, and a job killed at any moment keeps
every video whose record was written. What a killed job leaves of an unfinished video (data files without a
record) is overwritten when the video runs again. Names depend on the video only, so a video written twice (a
bundle the runner retries) ends the same. The files carry no options or other metadata of the run: they are the
same whichever run wrote them.

``CommitVideoResults`` is the writing step (``VideoResult`` in, one ``Committed`` out per video);
``list_commits`` reads the state of an output from one listing of ``_videos/`` (no file is opened), and
``discard_videos`` deletes what a rerun must redo. The tables under ``frames/``, ``videos/`` and ``snippets/`` are
built from the commits (``beam_pipeline.compaction``).
"""
import io
import logging
import posixpath
import re
import time
import typing
from typing import Callable, Dict, Iterable, Iterator, List, Optional

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from beam_pipeline.faults import TRANSIENT, retry_transient
from beam_pipeline.metrics import METRICS_NAMESPACE
from beam_pipeline.rows import VideoResult, VideoRow, arrow_schema
from beam_pipeline.storage import delete_files, list_files, read_bytes, write_atomically

__all__ = ["COMMITS_DIR", "RECORD_FILE", "RETRY_RECORD_FILE", "CommitListing", "CommitVideoResults", "Committed",
           "CommittedFiles", "commit_video_result", "data_file_name", "discard_videos", "list_commits", "read_commit",
           "video_dir"]

LOGGER = logging.getLogger(__name__)
COMMITS_DIR = "_videos"
FRAMES = "frames"
SNIPPETS = "snippets"
RECORD_FILE = "video.parquet"
RETRY_RECORD_FILE = "video.retry.parquet"
_VIDEOS_SCHEMA = arrow_schema(VideoRow)
PARQUET_CODEC = "zstd"
_DATA_FILE = re.compile(r"^(frames|snippets)\.(\d+)\.parquet$")


class Committed(typing.NamedTuple):
    """What the commit step emits per video (for counters and as the signal that commits are done)."""

    video_id: str
    status: str
    frame_rows: np.int64


beam.coders.registry.register_coder(Committed, beam.coders.RowCoder)


class CommitListing(typing.NamedTuple):
    """What one listing of ``_videos/<video_id>/`` tells about a video.

    Attributes:
        video_id: the folder's name.
        record: ``RECORD_FILE`` (committed for good), ``RETRY_RECORD_FILE`` (committed as a transient failure)
            or None (not committed: data files of a video that did not finish).
        frame_rows: rows of its frames file, from the file's name (0 when none; the largest if a retried
            bundle left two).
        snippet_rows: rows of its snippets file, likewise.
        paths: every file of the folder.
    """

    video_id: str
    record: Optional[str]
    frame_rows: int
    snippet_rows: int
    paths: typing.Tuple[str, ...]


class CommittedFiles(typing.NamedTuple):
    """A committed video's row and the names of the data files its record commits (None: no such rows)."""

    video: VideoRow
    frames_file: Optional[str]
    snippets_file: Optional[str]


def video_dir(output: str, video_id: str) -> str:
    """``<output>/_videos/<video_id>``."""
    return FileSystems.join(output, COMMITS_DIR, video_id)


def data_file_name(kind: str, rows: int) -> str:
    """``frames.<rows>.parquet`` or ``snippets.<rows>.parquet``."""
    return f"{kind}.{rows}.parquet"


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=PARQUET_CODEC)
    return sink.getvalue()


def commit_video_result(output: str, result: VideoResult) -> Committed:
    """Writes one video's files under ``<output>/_videos/<video_id>/``, the record last (module docstring).

    Returns:
        What was committed.
    """
    row = result.video
    folder = video_dir(output, row.video_id)
    committed: Dict[str, str] = {}
    for kind, table in ((FRAMES, result.frames), (SNIPPETS, result.snippets)):
        if table.num_rows:
            committed[f"mimamo.{kind}_file"] = data_file_name(kind, table.num_rows)
            write_atomically(FileSystems.join(folder, committed[f"mimamo.{kind}_file"]), _parquet_bytes(table))
    record = RETRY_RECORD_FILE if row.error_kind == TRANSIENT else RECORD_FILE
    write_atomically(FileSystems.join(folder, record), _parquet_bytes(
        pa.Table.from_pylist([row._asdict()], schema=_VIDEOS_SCHEMA.with_metadata(committed))))
    return Committed(row.video_id, row.status, result.frames.num_rows)


class _CommitVideoResultDoFn(beam.DoFn):
    """``VideoResult`` -> its files under ``<output>/_videos/`` -> ``Committed``; storage errors that may pass are
    retried (``faults.retry_transient``), others fail the bundle, which the runner retries."""

    def __init__(self, output: str, clock: Callable[[], float] = time.perf_counter):
        self._output = output
        self._clock = clock
        self._committed = Metrics.counter(METRICS_NAMESPACE, "videos_committed")
        self._latency = Metrics.distribution(METRICS_NAMESPACE, "commit_latency_ms")

    def process(self, result: VideoResult) -> Iterator[Committed]:
        started = self._clock()
        committed = retry_transient(lambda: commit_video_result(self._output, result),
                                    f"{result.video.video_uri}: commit")
        self._latency.update(int(round((self._clock() - started) * 1000)))
        self._committed.inc()
        yield committed


class CommitVideoResults(beam.PTransform):
    """``VideoResult``s -> each video committed under ``<output>/_videos/`` -> ``Committed`` per video.

    Apply it right after the step that makes the ``VideoResult``s (``PredictValenceArousal.video_results``), with
    no shuffle or ``Flatten`` between, so that it runs fused with it and commits each video as soon as it is
    done (a shuffle would hold every commit back until every video is predicted).

    Args:
        output: the output folder (local, ``gs://``, ``s3://``).
    """

    def __init__(self, output: str):
        super().__init__()
        self._output = output

    def expand(self, results: beam.PCollection) -> beam.PCollection:
        return results | "WriteVideoFiles" >> beam.ParDo(_CommitVideoResultDoFn(self._output)).with_output_types(
            Committed)


def list_commits(output: str) -> Dict[str, CommitListing]:
    """The state of every video under ``<output>/_videos/``, from one listing, by video id."""
    folders: Dict[str, List] = {}
    for stored in list_files(FileSystems.join(output, COMMITS_DIR, "*", "*")):
        video_id = posixpath.basename(posixpath.dirname(stored.path.replace("\\", "/")))
        folders.setdefault(video_id, []).append(stored)
    listings = {}
    for video_id, files in folders.items():
        names = {posixpath.basename(stored.path) for stored in files}
        record = RECORD_FILE if RECORD_FILE in names else RETRY_RECORD_FILE if RETRY_RECORD_FILE in names else None
        rows = {FRAMES: 0, SNIPPETS: 0}
        for match in filter(None, map(_DATA_FILE.match, names)):
            rows[match.group(1)] = max(rows[match.group(1)], int(match.group(2)))
        listings[video_id] = CommitListing(video_id, record, rows[FRAMES], rows[SNIPPETS],
                                           tuple(stored.path for stored in files))
    return listings


def discard_videos(listings: Iterable[CommitListing]) -> int:
    """Deletes every file of the given videos (before they run again); returns how many files."""
    paths = [path for listing in listings for path in listing.paths]
    retry_transient(lambda: delete_files(paths), "discarding commits")
    return len(paths)


def read_commit(output: str, video_id: str, record: str) -> CommittedFiles:
    """A committed video's ``VideoRow`` and the names of the data files its record commits."""
    payload = retry_transient(lambda: read_bytes(FileSystems.join(video_dir(output, video_id), record)),
                              f"{video_id}: reading its record")
    table = pq.read_table(pa.BufferReader(payload))
    (values,) = table.to_pylist()
    metadata = table.schema.metadata or {}
    names = [metadata.get(f"mimamo.{kind}_file".encode(), b"").decode() or None for kind in (FRAMES, SNIPPETS)]
    return CommittedFiles(VideoRow(**values), *names)

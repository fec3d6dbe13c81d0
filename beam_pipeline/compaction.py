"""The tables under an output, built from the committed videos: warehouse-sized Parquet, the same whatever number
of runs committed them.

Once every video of the run is committed (``beam_pipeline.commits``; the step waits for the count of commits as a
side input), ``CompactTables``

1. lists ``<output>/_videos/`` once and plans the files (``plan_shards``): the committed videos, in ``video_id``
   order, are cut into contiguous ranges of about ``TARGET_FILE_ROWS`` frame rows each (the row counts are in
   the commits' file names; ``--num_shards`` fixes the count instead); ``videos/`` gets one file per
   ``VIDEO_ROWS_PER_FILE`` videos;
2. writes each range's ``frames/part-SSSSS-of-NNNNN.parquet`` (and ``snippets/``) on the workers, the videos'
   rows in ``video_id`` order, each video's in (``face_id``, ``frame_index``) order, in row groups of
   ``ROW_GROUP_ROWS`` rows (the whole file when it is smaller), zstd;
3. writes ``videos/part-SSSSS-of-MMMMM.parquet`` from the videos' records (failures included);
4. deletes the table files the plan did not write (the files of an earlier, smaller plan).

Every file is written whole (``beam_pipeline.storage``) under a name that depends on the plan only, so a
compaction killed at any point is mended by the next run, which plans and writes the same files again. The rows
depend only on the committed videos, so the tables do not depend on how many runs it took. Each file's key-value
metadata holds the run's metadata (package version, weights and their SHA-256s, settings, options).
"""
import collections
import concurrent.futures
import contextlib
import logging
import math
import posixpath
import typing
from typing import Callable, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from beam_pipeline.commits import PARQUET_CODEC, CommitListing, list_commits, read_commit, video_dir
from beam_pipeline.faults import retry_transient
from beam_pipeline.metrics import METRICS_NAMESPACE
from beam_pipeline.rows import FrameRow, SnippetRow, VideoRow, arrow_schema
from beam_pipeline.sinks import FRAMES_DIR, SNIPPETS_DIR, TABLES, VIDEOS_DIR
from beam_pipeline.storage import atomic_local_file, delete_files, list_files, read_bytes

__all__ = ["ROW_GROUP_ROWS", "TARGET_FILE_ROWS", "VIDEO_ROWS_PER_FILE", "CommittedVideo", "CompactTables",
           "ShardPlan", "plan_shards", "shard_name", "write_parquet_shard"]

LOGGER = logging.getLogger(__name__)
ROW_GROUP_ROWS = 1 << 20  # rows per row group (1,048,576, Arrow's own cap); a smaller file is one row group
TARGET_FILE_ROWS = 4 * ROW_GROUP_ROWS  # frame rows per frames/ file: 4 full row groups (~94 MiB, performance.md)
VIDEO_ROWS_PER_FILE = 1 << 20  # videos/ rows per file
READ_AHEAD_VIDEOS = 8  # committed videos read in parallel by a shard writer (remote reads wait on the network)


class CommittedVideo(typing.NamedTuple):
    """A committed video as a shard writer needs it."""

    video_id: str
    record: str  # the record's file name (commits.RECORD_FILE or RETRY_RECORD_FILE)
    frame_rows: np.int64
    video_shard: np.int32  # which videos/ file gets its row


class ShardPlan(typing.NamedTuple):
    """One ``frames/`` (and ``snippets/``) file to write: shard ``shard`` of ``shards``, with its videos in order;
    ``video_shards`` is the number of ``videos/`` files."""

    shard: np.int32
    shards: np.int32
    video_shards: np.int32
    videos: Sequence[CommittedVideo]


for _row_type in (CommittedVideo, ShardPlan):
    beam.coders.registry.register_coder(_row_type, beam.coders.RowCoder)


def shard_name(shard: int, shards: int) -> str:
    """``part-SSSSS-of-NNNNN.parquet``."""
    return f"part-{shard:05d}-of-{shards:05d}.parquet"


def plan_shards(listings: Iterable[CommitListing], num_shards: int = 0,
                target_file_rows: int = TARGET_FILE_ROWS,
                video_rows_per_file: int = VIDEO_ROWS_PER_FILE) -> List[ShardPlan]:
    """Cuts the committed videos into table files (module docstring, step 1); deterministic.

    Args:
        listings: every video of ``commits.list_commits``; those without a record are left out.
        num_shards: files per table (every table gets this many, the ranges shared); 0: sized as below.
        target_file_rows: frame rows per ``frames/`` file when ``num_shards`` is 0.
        video_rows_per_file: videos per ``videos/`` file when ``num_shards`` is 0.

    Returns:
        One plan per ``frames/`` file, in order (at least one, possibly with no videos).
    """
    committed = sorted((listing for listing in listings if listing.record), key=lambda listing: listing.video_id)
    count = len(committed)
    sizes = [max(int(listing.frame_rows), 1) for listing in committed]  # a video without frames still counts
    total = sum(sizes)
    if num_shards:
        shards = video_shards = num_shards
    else:
        shards = max(1, math.ceil(total / target_file_rows))
        video_shards = max(1, math.ceil(count / video_rows_per_file))
    members: List[List[CommittedVideo]] = [[] for _ in range(shards)]
    before = 0
    for index, (listing, size) in enumerate(zip(committed, sizes)):
        shard = min(shards - 1, int((before + size / 2) * shards / total)) if total else 0
        before += size
        video_shard = shard if num_shards else index * video_shards // count
        members[shard].append(CommittedVideo(listing.video_id, listing.record, int(listing.frame_rows),
                                             int(video_shard)))
    return [ShardPlan(shard, shards, video_shards, videos) for shard, videos in enumerate(members)]


class _ParquetShardWriter:
    """Writes tables into one Parquet file in row groups of exactly ``row_group_rows`` rows (the last may be
    smaller); the file appears whole when the writer closes (``storage.atomic_local_file``)."""

    def __init__(self, uri: str, schema: pa.Schema, row_group_rows: int):
        self._stack = contextlib.ExitStack()
        self._schema = schema
        self._row_group_rows = row_group_rows
        path = self._stack.enter_context(atomic_local_file(uri))
        self._writer = pq.ParquetWriter(path, schema, compression=PARQUET_CODEC)
        self._pending: List[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0
        self.row_groups = 0

    def add(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self._pending.append(table.select(self._schema.names).cast(self._schema))
        self._pending_rows += table.num_rows
        while self._pending_rows >= self._row_group_rows:
            self._write(self._row_group_rows)

    def _write(self, rows: int) -> None:
        combined = pa.concat_tables(self._pending)
        self._writer.write_table(combined.slice(0, rows), row_group_size=rows)
        rest = combined.slice(rows)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
        self.rows += rows
        self.row_groups += 1

    def close(self) -> None:
        if self._pending_rows:
            self._write(self._pending_rows)
        self._writer.close()
        self._stack.close()

    def abort(self) -> None:
        self._writer.close()
        self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)


def write_parquet_shard(uri: str, schema: pa.Schema, tables: Iterable[pa.Table],
                        row_group_rows: int = ROW_GROUP_ROWS) -> Tuple[int, int]:
    """Writes ``tables`` in order into one Parquet file at ``uri`` (whole or not at all).

    Returns:
        (rows, row groups) written.
    """
    writer = _ParquetShardWriter(uri, schema, row_group_rows)
    try:
        for table in tables:
            writer.add(table)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return writer.rows, writer.row_groups


T = TypeVar("T")
R = TypeVar("R")


def _read_ahead(function: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[R]:
    """``map(function, items)`` in order, up to ``workers`` items read at once."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _read_table(uri: str) -> pa.Table:
    return pq.read_table(pa.BufferReader(retry_transient(lambda: read_bytes(uri), f"{uri}: reading")))


VideoShardKey = Tuple[int, int]  # (videos/ shard, videos/ shards)
KeyedVideoRow = Tuple[VideoShardKey, Optional[VideoRow]]


class _WriteShardDoFn(beam.DoFn):
    """``ShardPlan`` -> its ``frames/`` (and ``snippets/``) file written; emits each video's ``((video shard,
    video shards), VideoRow)`` and, on ``written``, the paths of the files it wrote."""

    def __init__(self, output: str, metadata: Mapping[str, str], snippets: bool, row_group_rows: int):
        self._output = output
        self._metadata = dict(metadata)
        self._snippets = snippets
        self._row_group_rows = row_group_rows
        self._frame_rows = Metrics.counter(METRICS_NAMESPACE, "table_frame_rows")
        self._statuses = {status: Metrics.counter(METRICS_NAMESPACE, f"table_videos_{status}")
                          for status in ("ok", "no_face", "failed")}

    def _read_video(self, video: CommittedVideo) -> Tuple[VideoRow, Optional[pa.Table], Optional[pa.Table]]:
        folder = video_dir(self._output, video.video_id)
        commit = read_commit(self._output, video.video_id, video.record)
        frames = _read_table(FileSystems.join(folder, commit.frames_file)) if commit.frames_file else None
        snippets = _read_table(FileSystems.join(folder, commit.snippets_file)) \
            if self._snippets and commit.snippets_file else None
        return commit.video, frames, snippets

    def process(self, plan: ShardPlan) -> Iterator:
        name = shard_name(plan.shard, plan.shards)
        frames_uri = FileSystems.join(self._output, FRAMES_DIR, name)
        snippets_uri = FileSystems.join(self._output, SNIPPETS_DIR, name)
        writers = [(frames_uri, _ParquetShardWriter(frames_uri, arrow_schema(FrameRow, self._metadata),
                                                    self._row_group_rows))]
        if self._snippets:
            writers.append((snippets_uri, _ParquetShardWriter(snippets_uri, arrow_schema(SnippetRow, self._metadata),
                                                              self._row_group_rows)))
        rows = []
        try:
            for video, (row, frames, snippets) in zip(plan.videos, _read_ahead(self._read_video, plan.videos,
                                                                                READ_AHEAD_VIDEOS)):
                for table, (_, writer) in zip((frames, snippets), writers):
                    if table is not None:
                        writer.add(table)
                rows.append(((int(video.video_shard), int(plan.video_shards)), row))
        except BaseException:
            for _, writer in writers:
                writer.abort()
            raise
        for uri, writer in writers:
            retry_transient(writer.close, f"{uri}: writing")
            yield beam.pvalue.TaggedOutput("written", uri)
        self._frame_rows.inc(writers[0][1].rows)
        LOGGER.info("%s: %d video(s), %d frame rows in %d row group(s)", frames_uri, len(plan.videos),
                    writers[0][1].rows, writers[0][1].row_groups)
        for key, row in rows:
            self._statuses[row.status].inc()
            yield key, row


def _video_shard_keys(plan: ShardPlan) -> Iterator[KeyedVideoRow]:
    """Every ``videos/`` shard once (the first plan speaks for all), so that an empty shard gets its file too."""
    if plan.shard == 0:
        for video_shard in range(plan.video_shards):
            yield (video_shard, int(plan.video_shards)), None


def _same(element):
    return element


def _write_videos_shard(element: Tuple[VideoShardKey, Iterable[Optional[VideoRow]]], output: str,
                        metadata: Mapping[str, str], row_group_rows: int) -> Iterator[str]:
    """``((video shard, video shards), rows)`` -> ``videos/part-...`` with the rows in ``video_id`` order; yields
    its path."""
    (video_shard, video_shards), rows = element
    ordered = sorted((row for row in rows if row is not None), key=lambda row: row.video_id)
    uri = FileSystems.join(output, VIDEOS_DIR, shard_name(video_shard, video_shards))
    schema = arrow_schema(VideoRow, metadata)
    table = pa.Table.from_pylist([row._asdict() for row in ordered], schema=schema)
    retry_transient(lambda: write_parquet_shard(uri, schema, [table], row_group_rows), f"{uri}: writing")
    yield uri


def _remove_stale_tables(output: str, written: List[str]) -> Iterator[str]:
    """Deletes the ``part-*.parquet`` files of the tables that this compaction did not write; yields them."""
    keep = {posixpath.normpath(path) for path in written}
    stale = [stored.path for table in TABLES
             for stored in list_files(FileSystems.join(output, table, "part-*.parquet"))
             if posixpath.normpath(stored.path) not in keep]
    if stale:
        LOGGER.info("removing %d table file(s) of an earlier compaction: %s", len(stale), ", ".join(stale))
        retry_transient(lambda: delete_files(stale), "removing old table files")
    yield from stale


def _plan(output: str, num_shards: int, target_file_rows: int, video_rows_per_file: int,
          committed_count: int) -> List[ShardPlan]:
    listings = retry_transient(lambda: list_commits(output), f"{output}: listing commits")
    plans = plan_shards(listings.values(), num_shards, target_file_rows, video_rows_per_file)
    LOGGER.info("%s: %d video(s) committed (%d by this run); tables: %d frames file(s), %d videos file(s)", output,
                sum(len(plan.videos) for plan in plans), committed_count, len(plans), plans[0].video_shards)
    return plans


class CompactTables(beam.PTransform):
    """The ``frames/``, ``videos/`` (and ``snippets/``) tables from every video committed under ``output``
    (module docstring), once the commits given as input are done.

    Args:
        output: the output folder (local, ``gs://``, ``s3://``).
        metadata: key-value metadata for every file (``PredictValenceArousal.run_metadata()`` and the options).
        num_shards: files per table; 0 sizes them (``TARGET_FILE_ROWS``, ``VIDEO_ROWS_PER_FILE``).
        snippets: also build ``snippets/``.
        row_group_rows: rows per row group.
        target_file_rows: see ``plan_shards``.

    Returns (from ``expand``): the paths of the table files removed as stale.
    """

    def __init__(self, output: str, metadata: Mapping[str, str], num_shards: int = 0, snippets: bool = False,
                 row_group_rows: int = ROW_GROUP_ROWS, target_file_rows: int = TARGET_FILE_ROWS,
                 video_rows_per_file: int = VIDEO_ROWS_PER_FILE):
        super().__init__()
        self._output = output
        self._metadata = dict(metadata)
        self._num_shards = num_shards
        self._snippets = snippets
        self._row_group_rows = row_group_rows
        self._target_file_rows = target_file_rows
        self._video_rows_per_file = video_rows_per_file

    def expand(self, committed: beam.PCollection) -> beam.PCollection:
        pipeline = committed.pipeline
        done = committed | "CountCommits" >> beam.combiners.Count.Globally()
        plans = (pipeline
                 | "StartCompaction" >> beam.Create([self._output])
                 | "PlanTableFiles" >> beam.FlatMap(
                     _plan, self._num_shards, self._target_file_rows, self._video_rows_per_file,
                     committed_count=beam.pvalue.AsSingleton(done)).with_output_types(ShardPlan))
        shards = (plans
                  | "SpreadTableFiles" >> beam.Reshuffle()
                  | "WriteFramesFiles" >> beam.ParDo(_WriteShardDoFn(
                      self._output, self._metadata, self._snippets, self._row_group_rows)).with_outputs(
                          "written", main="videos"))
        video_rows = shards.videos | "TypeVideoRows" >> beam.Map(_same).with_output_types(KeyedVideoRow)
        video_shards = plans | "KeyVideosFiles" >> beam.FlatMap(_video_shard_keys).with_output_types(KeyedVideoRow)
        video_files = (
            (video_rows, video_shards)
            | "JoinVideoRows" >> beam.Flatten()
            | "GroupVideoRows" >> beam.GroupByKey()
            | "WriteVideosFiles" >> beam.FlatMap(_write_videos_shard, self._output, self._metadata,
                                                 self._row_group_rows).with_output_types(str))
        frames_files = shards.written | "TypeWrittenFiles" >> beam.Map(_same).with_output_types(str)
        written = (frames_files, video_files) | "JoinWrittenFiles" >> beam.Flatten()
        return (pipeline
                | "StartCleanUp" >> beam.Create([self._output])
                | "RemoveStaleTableFiles" >> beam.FlatMap(_remove_stale_tables,
                                                          written=beam.pvalue.AsList(written)))

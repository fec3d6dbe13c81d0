"""Durable, idempotent commits of pipeline results into ``--output``, shared by watch mode and resumable runs.

A *batch* is a few videos run as one pipeline. Its results become part of the output in four steps:

1. the pipeline writes into ``<output>/_staging/<batch_id>/`` (a fresh output of its own, Beam's
   ``beam-temp-*`` folders included);
2. once it has finished, ``_staging/<batch_id>/_COMPLETE`` lists the batch's videos (written to a temporary
   name, flushed to disk and renamed, so the marker is whole or absent);
3. the staged Parquet files are renamed to ``<output>/<table>/part-<batch_id>-....parquet``, ``videos/`` last;
4. the staging folder is removed.

``videos/`` is the durable record: a video whose URI is in ``<output>/videos/*.parquet`` has all its rows
committed. A process killed at any step leaves either a staging folder without ``_COMPLETE`` (thrown away at
the next start: its videos have no rows yet and run again) or one with it (steps 3-4 are finished at the next
start; the renames already done are simply no longer in staging). Renames within one file system are atomic.
"""
import datetime
import json
import logging
import os
import shutil
import uuid
from typing import Callable, List, Sequence, Set

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.remote_files import is_remote
from beam_pipeline.sinks import FRAMES_DIR, SNIPPETS_DIR, TABLES, VIDEOS_DIR

__all__ = ["STAGING_DIR", "COMPLETE_MARKER", "read_processed_uris", "recover_staged_batches", "commit_batch", "run_and_commit_batch",
           "batch_options", "remove_stale_temp_dirs", "remove_empty_staging", "new_batch_id"]

LOGGER = logging.getLogger(__name__)
STAGING_DIR = "_staging"
COMPLETE_MARKER = "_COMPLETE"
TABLES_IN_COMMIT_ORDER = (SNIPPETS_DIR, FRAMES_DIR, VIDEOS_DIR)  # videos/ last: it is the record of results
BEAM_TEMP_PREFIX = "beam-temp-"  # folders Beam's file sinks write into before they finalise


def _is_directory(uri: str) -> bool:
    return not is_remote(uri) and os.path.isdir(uri)


def _ensure_directory(uri: str) -> None:
    if not is_remote(uri):
        os.makedirs(uri, exist_ok=True)


def _delete_tree(uri: str) -> None:
    if not is_remote(uri):
        shutil.rmtree(uri, ignore_errors=True)
        return
    files = [item.path for item in FileSystems.match([FileSystems.join(uri, "**")])[0].metadata_list]
    if files:
        FileSystems.delete(files)


def _list_files(pattern: str) -> List[str]:
    return sorted(item.path for item in FileSystems.match([pattern])[0].metadata_list if not _is_directory(item.path))


def read_processed_uris(output: str) -> Set[str]:
    """The ``video_uri`` of every row in ``<output>/videos/*.parquet`` (empty when there is none yet)."""
    uris: Set[str] = set()
    for path in _list_files(FileSystems.join(output, VIDEOS_DIR, "*.parquet")):
        with FileSystems.open(path) as handle:
            table = pq.read_table(pa.BufferReader(handle.read()), columns=["video_uri"])
        uris.update(table.column("video_uri").to_pylist())
    return uris


def _staged_files(batch_dir: str, table: str) -> List[str]:
    return _list_files(FileSystems.join(batch_dir, table, "*.parquet"))


def _write_marker(batch_dir: str, videos: Sequence[str]) -> None:
    """Writes ``_COMPLETE`` whole or not at all: a temporary file, flushed to disk (local), then renamed."""
    _ensure_directory(batch_dir)
    payload = json.dumps({"videos": list(videos)}).encode("utf-8")
    marker = FileSystems.join(batch_dir, COMPLETE_MARKER)
    if is_remote(batch_dir):  # object stores write an object whole
        with FileSystems.create(marker) as handle:
            handle.write(payload)
        return
    temporary = marker + ".tmp"
    with open(temporary, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, marker)
    _sync_directory(batch_dir)


def _sync_directory(path: str) -> None:
    """Flushes a local directory's entries (renames) to disk, so that they survive a power cut."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def commit_batch(output: str, batch_dir: str, batch_id: str) -> List[str]:
    """Moves a finished batch's Parquet files into the output tables and removes its staging folder.

    Idempotent: files already moved by an interrupted earlier commit are simply no longer in staging.

    Returns:
        The batch's video URIs (from its ``_COMPLETE`` marker).
    """
    with FileSystems.open(FileSystems.join(batch_dir, COMPLETE_MARKER)) as handle:
        videos = json.loads(handle.read().decode("utf-8"))["videos"]
    for table in TABLES_IN_COMMIT_ORDER:
        staged = _staged_files(batch_dir, table)
        if not staged:
            continue
        table_dir = FileSystems.join(output, table)
        _ensure_directory(table_dir)
        targets = [
            FileSystems.join(table_dir, f"part-{batch_id}-{os.path.basename(path)[len('part-'):]}")
            for path in staged
        ]
        FileSystems.rename(staged, targets)
        if not is_remote(table_dir):
            _sync_directory(table_dir)
    _delete_tree(batch_dir)
    LOGGER.info("batch %s committed: %d video(s)", batch_id, len(videos))
    return videos


def recover_staged_batches(output: str) -> List[str]:
    """Finishes or discards the batches an earlier, stopped process left in ``<output>/_staging/``.

    Returns:
        The video URIs of the batches it committed.
    """
    staging = FileSystems.join(output, STAGING_DIR)
    markers = _list_files(FileSystems.join(staging, "*", COMPLETE_MARKER))
    complete = {os.path.basename(os.path.dirname(marker)) for marker in markers}
    recovered: List[str] = []
    for batch_id in sorted(complete):
        LOGGER.info("finishing batch %s left by an earlier session", batch_id)
        recovered.extend(commit_batch(output, FileSystems.join(staging, batch_id), batch_id))
    if is_remote(staging):
        leftovers = {path[len(staging):].lstrip("/").split("/")[0]
                     for path in _list_files(FileSystems.join(staging, "**"))}
    else:
        leftovers = set(os.listdir(staging)) if os.path.isdir(staging) else set()
    for batch_id in sorted(leftovers - complete):
        LOGGER.info("discarding unfinished batch %s; its videos run again", batch_id)
        _delete_tree(FileSystems.join(staging, batch_id))
    return recovered


def new_batch_id() -> str:
    """A unique, time-ordered batch id: UTC time to the microsecond and 6 random hex digits."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def batch_options(options: PipelineOptions, videos: Sequence[str], batch_dir: str) -> PipelineOptions:
    """The options of one batch pipeline: ``options`` with ``videos`` as inputs, writing once into ``batch_dir``."""
    values = options.get_all_options(drop_default=True, retain_unknown_options=True)
    values.update(input=list(videos), output=batch_dir, watch=False, videos_per_commit=0)
    return PipelineOptions.from_dictionary(values)


def run_and_commit_batch(output: str, videos: Sequence[str], run_into: Callable[[str], object]) -> object:
    """Runs one batch into a fresh staging folder and commits it (steps 1-4 of the module docstring).

    Args:
        output: the run's ``--output``.
        videos: the batch's video URIs (recorded in ``_COMPLETE``).
        run_into: runs the batch's pipeline to completion, given the staging folder as its output.

    Returns:
        What ``run_into`` returned (a ``PipelineResult``).
    """
    batch_id = new_batch_id()
    batch_dir = FileSystems.join(output, STAGING_DIR, batch_id)
    LOGGER.info("batch %s: %s", batch_id, ", ".join(videos))
    try:
        result = run_into(batch_dir)
    except BaseException:
        _delete_tree(batch_dir)
        raise
    _write_marker(batch_dir, videos)
    commit_batch(output, batch_dir, batch_id)
    return result


def remove_stale_temp_dirs(output: str) -> List[str]:
    """Removes the ``<output>/<table>/beam-temp-*`` folders a killed run left (local output only).

    Returns:
        The folders removed.
    """
    if is_remote(output):
        return []
    removed = []
    for table in TABLES:
        table_dir = os.path.join(output, table)
        if not os.path.isdir(table_dir):
            continue
        for name in sorted(os.listdir(table_dir)):
            path = os.path.join(table_dir, name)
            if name.startswith(BEAM_TEMP_PREFIX) and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    if removed:
        LOGGER.info("removed %d temporary folder(s) left by an interrupted run: %s", len(removed), ", ".join(removed))
    return removed


def remove_empty_staging(output: str) -> None:
    """Removes ``<output>/_staging/`` once it holds nothing (local output only)."""
    staging = os.path.join(output, STAGING_DIR)
    if not is_remote(output) and os.path.isdir(staging) and not os.listdir(staging):
        os.rmdir(staging)

"""Watch mode (``--watch``): keep scanning the inputs and run the pipeline on each new, complete video.

The seed's daemon as a loop around the batch pipeline. Every ``--watch_interval`` seconds the inputs are expanded
again (``beam_pipeline.inputs``); a video is *ready* when it has no results yet and its size and modification
time are the same as at the previous scan (a file still being copied in keeps changing, so it waits). Ready
videos are run in batches of ``--watch_batch_size``.

Results are durable, and a restart never processes a video twice:

1. a batch runs into ``<output>/_staging/<batch_id>/`` (a fresh output for the pipeline);
2. when the pipeline has finished, ``_staging/<batch_id>/_COMPLETE`` lists the batch's videos;
3. the staged Parquet files are renamed to ``<output>/<table>/part-<batch_id>-....parquet`` (``videos/`` last);
4. the staging folder is removed.

"Has results" means: the video's URI is in ``<output>/videos/`` (read once at start, then kept up to date).
At start, a staging folder with ``_COMPLETE`` is finished (steps 3-4) and one without is thrown away (its videos
have no results, so they run again). The tables keep the layout of a normal run: ``frames/*.parquet`` etc.

Ctrl-C (SIGINT) asks the loop to stop: the batch being processed finishes and is committed, then the loop
returns. A second Ctrl-C interrupts at once.
"""
import datetime
import json
import logging
import os
import shutil
import signal
import threading
import uuid
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence, Set, Tuple

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.inputs import expand_input
from beam_pipeline.options import MimamoOptions, validate_options
from beam_pipeline.pipeline import FRAMES_DIR, SNIPPETS_DIR, VIDEOS_DIR
from beam_pipeline.remote_files import is_remote

__all__ = ["STAGING_DIR", "COMPLETE_MARKER", "WatchReport", "FolderWatcher", "read_processed_uris",
           "recover_staged_batches", "watch_inputs"]

LOGGER = logging.getLogger(__name__)
STAGING_DIR = "_staging"
COMPLETE_MARKER = "_COMPLETE"
TABLES_IN_COMMIT_ORDER = (SNIPPETS_DIR, FRAMES_DIR, VIDEOS_DIR)  # videos/ last: it is the record of results


@dataclass
class WatchReport:
    """What a watch session did: batches run and videos processed (in order), and whether Ctrl-C stopped it."""

    batches: int = 0
    videos: List[str] = field(default_factory=list)
    interrupted: bool = False


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


def _commit_batch(output: str, batch_dir: str, batch_id: str) -> List[str]:
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
        _ensure_directory(FileSystems.join(output, table))
        targets = [
            FileSystems.join(output, table, f"part-{batch_id}-{os.path.basename(path)[len('part-'):]}")
            for path in staged
        ]
        FileSystems.rename(staged, targets)
    _delete_tree(batch_dir)
    LOGGER.info("batch %s committed: %d video(s)", batch_id, len(videos))
    return videos


def recover_staged_batches(output: str) -> List[str]:
    """Finishes or discards the batches an earlier, stopped watch session left in ``<output>/_staging/``.

    Returns:
        The video URIs of the batches it committed.
    """
    staging = FileSystems.join(output, STAGING_DIR)
    markers = _list_files(FileSystems.join(staging, "*", COMPLETE_MARKER))
    complete = {os.path.basename(os.path.dirname(marker)) for marker in markers}
    recovered: List[str] = []
    for batch_id in sorted(complete):
        LOGGER.info("finishing batch %s left by an earlier session", batch_id)
        recovered.extend(_commit_batch(output, FileSystems.join(staging, batch_id), batch_id))
    if is_remote(staging):
        leftovers = {path[len(staging):].lstrip("/").split("/")[0]
                     for path in _list_files(FileSystems.join(staging, "**"))}
    else:
        leftovers = set(os.listdir(staging)) if os.path.isdir(staging) else set()
    for batch_id in sorted(leftovers - complete):
        LOGGER.info("discarding unfinished batch %s; its videos run again", batch_id)
        _delete_tree(FileSystems.join(staging, batch_id))
    return recovered


def _new_batch_id() -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


class FolderWatcher:
    """Scans the inputs of ``options`` and runs the pipeline on new, complete videos (module docstring).

    Args:
        options: every option of the run; ``--input``, ``--output``, ``--video_extensions``,
            ``--watch_interval`` and ``--watch_batch_size`` drive the loop, the rest goes to each batch.
        run_batch: runs one batch pipeline to completion, given its options (``beam_pipeline.run``'s runner).
    """

    def __init__(self, options: PipelineOptions, run_batch: Callable[[PipelineOptions], object]):
        self._options = options
        self._mimamo = options.view_as(MimamoOptions)
        validate_options(self._mimamo)
        self._run_batch = run_batch
        self._stop = threading.Event()
        self._last_seen: Dict[str, Tuple[int, float]] = {}
        self._report = WatchReport()
        recovered = recover_staged_batches(self._mimamo.output)
        self._processed: Set[str] = read_processed_uris(self._mimamo.output) | set(recovered)
        LOGGER.info("%s: %d video(s) already have results", self._mimamo.output, len(self._processed))

    @property
    def report(self) -> WatchReport:
        """What this watcher has done so far."""
        return self._report

    @property
    def processed(self) -> Set[str]:
        """URIs of the videos that have results in the output."""
        return set(self._processed)

    def stop(self) -> None:
        """Asks the loop to return once the current batch is committed (safe from signal handlers)."""
        self._stop.set()

    def _list_videos(self) -> List[str]:
        videos: Dict[str, None] = {}
        for uri in self._mimamo.input:
            for match in expand_input(uri, self._mimamo.video_extensions):
                if match.error is None:
                    videos.setdefault(match.uri, None)
                else:
                    LOGGER.debug("%s: no video yet (%s)", match.uri, match.error)
        return list(videos)

    def find_ready_videos(self) -> List[str]:
        """Scans once: new videos whose size and modification time did not change since the previous scan."""
        candidates = [uri for uri in self._list_videos() if uri not in self._processed]
        ready = []
        for uri, result in zip(candidates, FileSystems.match(candidates) if candidates else []):
            if len(result.metadata_list) != 1:
                continue  # gone since the listing
            metadata = result.metadata_list[0]
            stamp = (metadata.size_in_bytes, metadata.last_updated_in_seconds)
            if stamp[0] > 0 and self._last_seen.get(uri) == stamp:
                ready.append(uri)
            elif uri in self._last_seen:
                LOGGER.info("%s is still changing (%d bytes); waiting", uri, stamp[0])
            self._last_seen[uri] = stamp
        return ready

    def _batch_options(self, videos: Sequence[str], batch_dir: str) -> PipelineOptions:
        values = self._options.get_all_options(drop_default=True, retain_unknown_options=True)
        values.update(input=list(videos), output=batch_dir, watch=False)
        return PipelineOptions.from_dictionary(values)

    def process_batch(self, videos: Sequence[str]) -> None:
        """Runs the pipeline on ``videos`` and commits the results (steps 1-4 of the module docstring)."""
        output = self._mimamo.output
        batch_id = _new_batch_id()
        batch_dir = FileSystems.join(output, STAGING_DIR, batch_id)
        LOGGER.info("batch %s: %s", batch_id, ", ".join(videos))
        try:
            self._run_batch(self._batch_options(videos, batch_dir))
        except BaseException:
            _delete_tree(batch_dir)
            raise
        _ensure_directory(batch_dir)
        with FileSystems.create(FileSystems.join(batch_dir, COMPLETE_MARKER)) as handle:
            handle.write(json.dumps({"videos": list(videos)}).encode("utf-8"))
        self._processed.update(_commit_batch(output, batch_dir, batch_id))
        for uri in videos:
            self._last_seen.pop(uri, None)
        self._report.batches += 1
        self._report.videos.extend(videos)

    def scan_once(self) -> List[str]:
        """One scan: processes the ready videos batch by batch, stopping early when asked to.

        Returns:
            The videos processed by this scan.
        """
        ready = self.find_ready_videos()
        size = self._mimamo.watch_batch_size
        done: List[str] = []
        for start in range(0, len(ready), size):
            if self._stop.is_set():
                break
            batch = ready[start:start + size]
            self.process_batch(batch)
            done.extend(batch)
        return done

    def run(self) -> WatchReport:
        """Scans every ``--watch_interval`` seconds until :meth:`stop` or Ctrl-C; returns what it did.

        In the main thread, the first SIGINT calls :meth:`stop` and the second interrupts (``KeyboardInterrupt``).
        """
        restore = self._install_sigint_handler()
        LOGGER.info("watching %s every %g s -> %s; Ctrl-C stops", ", ".join(self._mimamo.input),
                    self._mimamo.watch_interval, self._mimamo.output)
        try:
            while not self._stop.is_set():
                self.scan_once()
                self._stop.wait(self._mimamo.watch_interval)
        finally:
            restore()
        LOGGER.info("watch stopped: %d video(s) in %d batch(es)", len(self._report.videos), self._report.batches)
        return self._report

    def _install_sigint_handler(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum, frame):  # pylint: disable=unused-argument
            self._report.interrupted = True
            LOGGER.warning("Ctrl-C: stopping after the current batch (press again to interrupt now)")
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.stop()

        signal.signal(signal.SIGINT, on_sigint)
        return lambda: signal.signal(signal.SIGINT, previous)


def watch_inputs(options: PipelineOptions, run_batch: Callable[[PipelineOptions], object]) -> WatchReport:
    """Runs watch mode until Ctrl-C (see :class:`FolderWatcher`)."""
    return FolderWatcher(options, run_batch).run()

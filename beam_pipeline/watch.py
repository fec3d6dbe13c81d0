"""Watch mode (``--watch``): keep scanning the inputs and run the pipeline on each new, complete video.

The seed's daemon as a loop around the batch pipeline. Every ``--watch_interval`` seconds the inputs are expanded
again (``beam_pipeline.inputs``); a video is *ready* when it has no results yet and its size and modification
time are the same as at the previous scan (a file still being copied in keeps changing, so it waits). Ready
videos are run in batches of ``--watch_batch_size``.

Results are durable, and a restart never processes a video twice: each batch is the pipeline of a normal run
on the batch's videos, which commits each video under ``<output>/_videos/`` as soon as it is done
(``beam_pipeline.commits``) and then rebuilds the tables from every commit (``beam_pipeline.compaction``). The
session holds the output's lock throughout (``beam_pipeline.locks``).

"Has results" means: the video is committed (its ``video_id`` under ``_videos/``; listed once at start, then
kept up to date). At start, videos committed as transient failures and unfinished ones are run again, as in any
resumed run (``beam_pipeline.resume``). The tables keep the layout of a normal run: ``frames/*.parquet`` etc.

Ctrl-C (SIGINT) asks the loop to stop: the batch being processed finishes and is committed, then the loop
returns. A second Ctrl-C interrupts at once.
"""
import logging
import signal
import threading
from dataclasses import dataclass, field
from typing import AbstractSet, Callable, Dict, List, Optional, Sequence, Set, Tuple

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.commits import RECORD_FILE, list_commits
from beam_pipeline.inputs import expand_input
from beam_pipeline.options import MimamoOptions, validate_options
from beam_pipeline.rows import compute_video_id

__all__ = ["WatchReport", "FolderWatcher", "batch_options", "watch_inputs"]

LOGGER = logging.getLogger(__name__)


@dataclass
class WatchReport:
    """What a watch session did: batches run and videos processed (in order), and whether Ctrl-C stopped it."""

    batches: int = 0
    videos: List[str] = field(default_factory=list)
    interrupted: bool = False


def batch_options(options: PipelineOptions, videos: Sequence[str]) -> PipelineOptions:
    """The options of one batch pipeline: ``options`` with ``videos`` as inputs, outside watch mode."""
    # kept in memory for the batch's pipeline; what a run writes down goes through options.recordable_options
    values = options.get_all_options(drop_default=True, retain_unknown_options=True)
    values.update(input=list(videos), watch=False)
    return PipelineOptions.from_dictionary(values)


class FolderWatcher:
    """Scans the inputs of ``options`` and runs the pipeline on new, complete videos (module docstring).

    Args:
        options: every option of the run; ``--input``, ``--output``, ``--video_extensions``,
            ``--watch_interval`` and ``--watch_batch_size`` drive the loop, the rest goes to each batch.
        run_batch: runs one batch pipeline to completion, given its options (``beam_pipeline.run.run_pipeline``);
            the caller holds the output's lock.
        committed: ids of the videos already committed (``resume.prepare_output``); None lists the output.
    """

    def __init__(self, options: PipelineOptions, run_batch: Callable[[PipelineOptions], object],
                 committed: Optional[AbstractSet[str]] = None):
        self._options = options
        self._mimamo = options.view_as(MimamoOptions)
        validate_options(self._mimamo)
        self._run_batch = run_batch
        self._stop = threading.Event()
        self._last_seen: Dict[str, Tuple[int, float]] = {}
        self._report = WatchReport()
        if committed is None:
            committed = {video_id for video_id, listing in list_commits(self._mimamo.output).items()
                         if listing.record == RECORD_FILE}
        self._processed: Set[str] = set(committed)
        LOGGER.info("%s: %d video(s) already have results", self._mimamo.output, len(self._processed))

    @property
    def report(self) -> WatchReport:
        """What this watcher has done so far."""
        return self._report

    @property
    def processed(self) -> Set[str]:
        """Ids (``video_id``) of the videos committed in the output."""
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
        candidates = [uri for uri in self._list_videos() if compute_video_id(uri) not in self._processed]
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

    def process_batch(self, videos: Sequence[str]) -> None:
        """Runs the pipeline on ``videos``: each is committed, then the tables are rebuilt."""
        self._run_batch(batch_options(self._options, videos))
        self._processed.update(compute_video_id(uri) for uri in videos)
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


def watch_inputs(options: PipelineOptions, run_batch: Callable[[PipelineOptions], object],
                 committed: Optional[AbstractSet[str]] = None) -> WatchReport:
    """Runs watch mode until Ctrl-C (see :class:`FolderWatcher`)."""
    return FolderWatcher(options, run_batch, committed).run()

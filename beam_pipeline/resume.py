"""Resumable local runs: commit every few videos, and skip the committed ones when the same run starts again.

A local run (DirectRunner, local ``--output``, ``--videos_per_commit`` N > 0) expands its inputs on the
launching machine and runs the pipeline on batches of N videos, one after the other; each batch is staged and
committed into the output tables (``beam_pipeline.commits``, the mechanism watch mode uses). Killed at any
moment (``kill -9``, a reboot) and started again with the same command, the run

1. checks that ``<output>/_run.json``, written before the first batch, holds the same run (below);
2. removes ``beam-temp-*`` folders, finishes batches that were committing and throws away unfinished ones;
3. skips every video whose URI is in ``<output>/videos/`` and runs the others.

It ends with the rows an uninterrupted run writes: each video's rows are committed once, by one batch. The
files differ: each batch adds one Parquet file per table (``part-<batch_id>-SSSSS-of-NNNNN.parquet``).

*The same run* means the same options (``MimamoOptions`` and Beam's, inputs included, defaults spelt out or
not), the same package version and the same weights (SHA-256), except the options that only change how it
runs (``EXECUTION_ONLY_OPTIONS``) and ``--output`` itself (the folder may be spelt differently). Anything
else on an output that holds results is refused in one line.

A video is identified by its URI as matched (``videos.video_uri``, the key of ``video_id``): a file replaced
under the same name after its results were committed is not run again.
"""
import json
import logging
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence

from apache_beam.metrics.cells import DistributionResult
from apache_beam.metrics.metric import MetricResults
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineState

from beam_pipeline.beam_compat import LOCAL_RUNNERS
from beam_pipeline.commits import (STAGING_DIR, batch_options, read_processed_uris,
                                   recover_staged_batches, remove_empty_staging, remove_stale_temp_dirs,
                                   run_and_commit_batch)
from beam_pipeline.inputs import InputMatch, dedup_key, expand_input, pick_first_match
from beam_pipeline.options import MimamoOptions, recordable_options, validate_options
from beam_pipeline.remote_files import is_remote, resolve_weight_uris, weights_sha256
from beam_pipeline.sinks import TABLES
from mimamo_ops import __version__
from mimamo_ops.model.checkpoints import BACKBONE, MIMAMO

__all__ = ["RUN_MANIFEST", "EXECUTION_ONLY_OPTIONS", "is_resumable", "build_manifest", "check_same_run",
           "list_entries", "run_resumable", "CombinedResult"]

LOGGER = logging.getLogger(__name__)
RUN_MANIFEST = "_run.json"
# Options that change how a run executes, never its rows: they may differ between a run and its resumption.
EXECUTION_ONLY_OPTIONS = frozenset({
    "progress_dir", "log", "logdir", "n_workers", "direct_num_workers", "direct_running_mode",
    "videos_per_commit",
})


def is_resumable(options: PipelineOptions) -> bool:
    """True for a local run that commits as it goes: DirectRunner, local ``--output``, ``--videos_per_commit`` > 0."""
    mimamo = options.view_as(MimamoOptions)
    return (mimamo.videos_per_commit > 0 and options.view_as(StandardOptions).runner in LOCAL_RUNNERS
            and bool(mimamo.output) and not is_remote(mimamo.output) and not mimamo.watch)


def build_manifest(options: PipelineOptions) -> Dict[str, Any]:
    """What identifies a run: package version, weights' SHA-256s and every option that can change its rows."""
    mimamo = options.view_as(MimamoOptions)
    checkpoint, backbone = resolve_weight_uris(mimamo.checkpoint, mimamo.backbone)
    values = recordable_options(options)  # credentials are never written (_run.json)
    # --output is where the manifest lives, so it is the same folder however it was spelt
    kept = {key: value for key, value in values.items() if key not in EXECUTION_ONLY_OPTIONS and key != "output"}
    return {
        "mimamo.version": __version__,
        "checkpoint_sha256": weights_sha256(checkpoint, MIMAMO),
        "backbone_sha256": weights_sha256(backbone, BACKBONE),
        "options": json.loads(json.dumps(kept, sort_keys=True, default=str)),
    }


def _holds_results(output: str) -> bool:
    tables = any(os.path.isdir(os.path.join(output, table)) and os.listdir(os.path.join(output, table))
                 for table in TABLES)
    staging = os.path.join(output, STAGING_DIR)
    return tables or (os.path.isdir(staging) and bool(os.listdir(staging)))


def _differences(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    changed = [f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new))
               if key != "options" and old.get(key) != new.get(key)]
    old_options, new_options = old.get("options", {}), new.get("options", {})
    changed += [f"--{key} {old_options.get(key)!r} -> {new_options.get(key)!r}"
                for key in sorted(set(old_options) | set(new_options)) if old_options.get(key) != new_options.get(key)]
    return changed


def check_same_run(output: str, manifest: Dict[str, Any]) -> None:
    """Refuses an output holding results of another run (or of a run that did not record itself).

    Raises:
        ValueError: one line naming the output and what differs.
    """
    path = os.path.join(output, RUN_MANIFEST)
    if not _holds_results(output):
        return
    if not os.path.isfile(path):
        raise ValueError(f"--output={output!r} holds results of an earlier run that cannot be resumed (no "
                         f"{RUN_MANIFEST}); give a new directory or remove the old results")
    with open(path, encoding="utf-8") as handle:
        recorded = json.load(handle)
    changed = _differences(recorded, manifest)
    if changed:
        shown = "; ".join(changed[:3]) + (f"; and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise ValueError(f"--output={output!r} holds results of a run with other options ({shown}); run the same "
                         "command to resume it, or give a new directory")


def _write_manifest(output: str, manifest: Dict[str, Any]) -> None:
    os.makedirs(output, exist_ok=True)
    path = os.path.join(output, RUN_MANIFEST)
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(path + ".tmp", path)


def list_entries(inputs: Sequence[str], video_extensions: Sequence[str]) -> List[InputMatch]:
    """The run's entries (``beam_pipeline.inputs``) in input order, one per resolved path, chosen among
    duplicates as the pipeline chooses (``pick_first_match``); entries that cannot be videos keep their reason,
    so that their batch gives them the ``failed`` row an uninterrupted run gives them."""
    groups: Dict[str, List[InputMatch]] = {}
    for uri in inputs:
        for match in expand_input(uri, video_extensions):
            groups.setdefault(dedup_key(match.uri), []).append(match)
    return [pick_first_match(matches) for matches in groups.values()]


def run_resumable(options: PipelineOptions, run_batch) -> "CombinedResult":
    """Runs ``options`` batch by batch, committing each, skipping what an earlier attempt committed.

    Args:
        options: the run's options (``is_resumable``).
        run_batch: runs one batch pipeline to completion given its options and its entries (already expanded);
            returns its ``PipelineResult``.

    Returns:
        The batches' results as one (metrics summed).

    Raises:
        ValueError: an option is bad, or ``--output`` holds results of another run (``check_same_run``).
    """
    mimamo = options.view_as(MimamoOptions)
    validate_options(mimamo)
    output = mimamo.output
    manifest = build_manifest(options)
    check_same_run(output, manifest)
    _write_manifest(output, manifest)
    remove_stale_temp_dirs(output)
    recover_staged_batches(output)
    done = read_processed_uris(output)
    videos = list_entries(mimamo.input, mimamo.video_extensions)
    pending = [entry for entry in videos if entry.uri not in done]
    if len(pending) < len(videos):
        LOGGER.info("%s: %d of %d video(s) already have results; running the other %d", output,
                    len(videos) - len(pending), len(videos), len(pending))
    size = mimamo.videos_per_commit
    results = []
    for start in range(0, len(pending), size):
        batch = pending[start:start + size]
        uris = [entry.uri for entry in batch]
        results.append(run_and_commit_batch(
            output, uris, lambda batch_dir: run_batch(batch_options(options, uris, batch_dir), batch)))
    remove_empty_staging(output)
    return CombinedResult(results, skipped=len(videos) - len(pending))


class CombinedResult:
    """The ``PipelineResult``s of a resumable run's batches seen as one run's result.

    Attributes:
        results: the batches' results, in order.
        skipped: videos that already had results when the run started.
    """

    def __init__(self, results: Iterable[object], skipped: int = 0):
        self.results = list(results)
        self.skipped = skipped

    @property
    def state(self) -> str:
        return PipelineState.DONE

    def wait_until_finish(self, duration: Optional[int] = None) -> str:  # pylint: disable=unused-argument
        return PipelineState.DONE

    def metrics(self) -> MetricResults:
        return _SummedMetrics([result.metrics() for result in self.results])


class _SummedMetrics(MetricResults):
    """Metrics of several pipeline runs: counters summed and distributions combined per key; other kinds listed."""

    def __init__(self, parts: List[MetricResults]):
        self._parts = parts

    def query(self, filter=None):  # pylint: disable=redefined-builtin
        merged: Dict[str, Dict[object, object]] = {}
        listed: Dict[str, List[object]] = {}
        for part in self._parts:
            for kind, items in part.query(filter).items():
                if kind not in (self.COUNTERS, self.DISTRIBUTIONS):
                    listed.setdefault(kind, []).extend(items)
                    continue
                by_key = merged.setdefault(kind, {})
                for item in items:
                    previous = by_key.get(item.key)
                    by_key[item.key] = item if previous is None else _add(kind, previous, item)
        answer = {kind: list(by_key.values()) for kind, by_key in merged.items()}
        answer.update(listed)
        for kind in (self.COUNTERS, self.DISTRIBUTIONS, self.GAUGES):
            answer.setdefault(kind, [])
        return answer


def _add(kind: str, first, second):
    """Adds two MetricResults of the same key (counters: sum; distributions: combined data)."""
    def combine(a, b):
        if a is None or b is None:
            return a if b is None else b
        if kind == MetricResults.COUNTERS:
            return a + b
        return DistributionResult(a.data.combine(b.data))

    return type(first)(first.key, combine(first.committed, second.committed),
                       combine(first.attempted, second.attempted))

"""Resuming: every run on every runner records what it is, and a rerun of the same command takes up where the
last one stopped.

Before the pipeline starts, with the output's lock held (``beam_pipeline.locks``), the launcher

1. checks ``<output>/_run.json``: an output that holds results (commits or tables) must hold results of the same
   run (below), else the run is refused in one line naming what differs; the record is written when missing;
2. removes what a killed writer left (hidden temporary files of a local output);
3. lists ``<output>/_videos/`` once (``beam_pipeline.commits``): videos committed for good are skipped; the files
   of videos committed as transient failures and of videos that never finished are deleted, and they run again.

The pipeline then commits each video it runs and rebuilds the tables from every commit (``compaction``), so a
rerun ends with the tables an uninterrupted run writes, however many times it was killed.

*The same run* means the same package version, the same weights (SHA-256) and the same MIMAMO options, inputs
included, defaults spelt out or not, except those that only change how it runs
(``options.EXECUTION_ONLY_OPTIONS``) and ``--output`` itself. Beam's options (runner, machines) may change: a
run killed on one runner may be resumed on another. A video is identified by its URI as matched
(``video_id``): a file replaced under the same name after it was committed is not run again.
"""
import json
import logging
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Optional

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline.commits import COMMITS_DIR, RECORD_FILE, discard_videos, list_commits
from beam_pipeline.faults import retry_transient
from beam_pipeline.options import MimamoOptions, identity_options
from beam_pipeline.remote_files import resolve_weight_uris, weights_sha256
from beam_pipeline.sinks import TABLES
from beam_pipeline.storage import list_files, read_bytes, remove_temporary_files, write_atomically
from mimamo_ops import __version__
from mimamo_ops.model.checkpoints import BACKBONE, MIMAMO

__all__ = ["LAYOUT", "RUN_MANIFEST", "RunPlan", "build_manifest", "check_same_run", "committed_video_ids",
           "prepare_output"]

LOGGER = logging.getLogger(__name__)
RUN_MANIFEST = "_run.json"
LAYOUT = "per-video commits (_videos/), tables compacted from them"  # what outputs of this version hold


@dataclass(frozen=True)
class RunPlan:
    """What a run found on its output before it started.

    Attributes:
        committed: ids of the videos committed for good by earlier runs (skipped).
        retried: videos committed as transient failures, run again.
        unfinished: videos with data files but no record (a killed run's), run again.
    """

    committed: FrozenSet[str] = frozenset()
    retried: int = 0
    unfinished: int = 0


def build_manifest(options: PipelineOptions) -> Dict[str, Any]:
    """What identifies a run: package version, layout, weights' SHA-256s and its identity options."""
    mimamo = options.view_as(MimamoOptions)
    checkpoint, backbone = resolve_weight_uris(mimamo.checkpoint, mimamo.backbone)
    return {
        "mimamo.version": __version__,
        "layout": LAYOUT,
        "checkpoint_sha256": weights_sha256(checkpoint, MIMAMO),
        "backbone_sha256": weights_sha256(backbone, BACKBONE),
        "options": json.loads(json.dumps(identity_options(options), sort_keys=True, default=str)),
    }


def _holds_results(output: str, has_commits: Optional[bool] = None) -> bool:
    """Whether ``output`` holds commits or table files (``has_commits``: already known from a listing)."""
    if has_commits is None:
        has_commits = bool(list_files(FileSystems.join(output, COMMITS_DIR, "*", "*")))
    return has_commits or any(list_files(FileSystems.join(output, table, "*")) for table in TABLES)


def _differences(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    changed = [f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new))
               if key != "options" and old.get(key) != new.get(key)]
    old_options, new_options = old.get("options", {}), new.get("options", {})
    changed += [f"--{key} {old_options.get(key)!r} -> {new_options.get(key)!r}"
                for key in sorted(set(old_options) | set(new_options)) if old_options.get(key) != new_options.get(key)]
    return changed


def _read_manifest(output: str) -> Optional[Dict[str, Any]]:
    path = FileSystems.join(output, RUN_MANIFEST)
    if not FileSystems.exists(path):
        return None
    return json.loads(read_bytes(path).decode("utf-8"))


def check_same_run(output: str, manifest: Dict[str, Any], has_commits: Optional[bool] = None) -> None:
    """Refuses an output holding results of another run (or of a run that did not record itself).

    Args:
        output: the output folder.
        manifest: this run's ``build_manifest``.
        has_commits: whether ``_videos/`` holds files, when a listing already told.

    Raises:
        ValueError: one line naming the output and what differs.
    """
    if not _holds_results(output, has_commits):
        return
    recorded = _read_manifest(output)
    if recorded is None:
        raise ValueError(f"--output={output!r} holds results of an earlier run that cannot be resumed (no "
                         f"{RUN_MANIFEST}); give a new directory or remove the old results")
    changed = _differences(recorded, manifest)
    if changed:
        shown = "; ".join(changed[:3]) + (f"; and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise ValueError(f"--output={output!r} holds results of a run with other options ({shown}); run the same "
                         "command to resume it, or give a new directory")


def committed_video_ids(output: str) -> FrozenSet[str]:
    """Ids of the videos committed for good under ``output`` (what a rerun skips)."""
    return frozenset(video_id for video_id, listing in list_commits(output).items() if listing.record == RECORD_FILE)


def prepare_output(output: str, manifest: Dict[str, Any]) -> RunPlan:
    """Steps 1-3 of the module docstring; the caller holds the output's lock.

    Raises:
        ValueError: the output holds results of another run (``check_same_run``).
    """
    listings = retry_transient(lambda: list_commits(output), f"{output}: listing commits")
    check_same_run(output, manifest, has_commits=bool(listings))
    if _read_manifest(output) is None:
        write_atomically(FileSystems.join(output, RUN_MANIFEST),
                         json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"))
    removed = remove_temporary_files(output)
    if removed:
        LOGGER.info("%s: removed %d temporary file(s) left by a killed run", output, len(removed))
    retried = [listing for listing in listings.values() if listing.record not in (RECORD_FILE, None)]
    unfinished = [listing for listing in listings.values() if listing.record is None]
    discard_videos(retried + unfinished)
    plan = RunPlan(frozenset(video_id for video_id, listing in listings.items() if listing.record == RECORD_FILE),
                   len(retried), len(unfinished))
    if plan.committed or retried or unfinished:
        LOGGER.info("%s: %d video(s) committed by earlier runs are skipped; %d transient failure(s) and %d "
                    "unfinished video(s) run again", output, len(plan.committed), len(retried), len(unfinished))
    return plan

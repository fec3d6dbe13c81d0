"""A local side channel for progress: workers append small records to files that ``mimamo run`` reads.

Beam metrics of the DirectRunner are only readable once the pipeline is done, so the predict DoFn also writes
progress records (``frames N`` and ``video STATUS`` lines) to its own file under ``--progress_dir``; the launcher
polls the directory and draws bars (``beam_pipeline.cli.progress``). This works for every runner whose workers
share the launcher's disk (the DirectRunner in both running modes, and the PortableRunner with
``--environment_type=LOOPBACK``).
"""
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, TextIO


__all__ = ["ProgressCounts", "ProgressWriter", "read_progress"]

_SUFFIX = ".progress"


@dataclass(frozen=True)
class ProgressCounts:
    """Totals read from a progress directory: videos finished (any status), frames decoded, videos failed."""

    videos_done: int = 0
    frames_decoded: int = 0
    videos_failed: int = 0


class ProgressWriter:
    """Appends progress records to a file of its own in ``directory`` (one writer per DoFn instance).

    Frames are buffered and written every ``flush_frames`` frames and at the end of each video.
    """

    def __init__(self, directory: str, flush_frames: int = 32):
        self._path = Path(directory) / f"{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex}{_SUFFIX}"
        self._flush_frames = flush_frames
        self._pending_frames = 0
        self._handle: Optional[TextIO] = None

    def _write(self, line: str) -> None:
        if self._handle is None:
            self._handle = open(self._path, "a", encoding="utf-8")  # pylint: disable=consider-using-with
        self._handle.write(line + "\n")
        self._handle.flush()

    def add_frames(self, count: int = 1) -> None:
        """Counts decoded frames."""
        self._pending_frames += count
        if self._pending_frames >= self._flush_frames:
            self._write(f"frames {self._pending_frames}")
            self._pending_frames = 0

    def finish_video(self, status: str) -> None:
        """Records a finished video with its status (``ok``, ``no_face`` or ``failed``)."""
        if self._pending_frames:
            self._write(f"frames {self._pending_frames}")
            self._pending_frames = 0
        self._write(f"video {status}")

    def close(self) -> None:
        """Closes the file (records written so far stay)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_progress(directory: str) -> ProgressCounts:
    """Sums the records of every writer in ``directory`` (partial last lines are ignored)."""
    videos = frames = failed = 0
    for path in Path(directory).glob(f"*{_SUFFIX}"):
        for line in path.read_text(encoding="utf-8").splitlines():
            kind, _, value = line.partition(" ")
            if kind == "frames" and value.isdigit():
                frames += int(value)
            elif kind == "video":
                videos += 1
                failed += value == "failed"
    return ProgressCounts(videos_done=videos, frames_decoded=frames, videos_failed=failed)

"""Progress bars of ``mimamo run``: two tqdm bars refreshed from the workers' progress records
(``beam_pipeline.progress_records``)."""
import threading
from typing import TextIO

from tqdm import tqdm

from beam_pipeline.progress_records import read_progress

__all__ = ["ProgressBars"]


class ProgressBars:
    """Two tqdm bars on ``stream`` (videos out of ``total_videos``, frames decoded) refreshed from a directory.

    Use as a context manager around the pipeline run; a daemon thread polls every ``interval_s`` seconds.
    """

    def __init__(self, directory: str, total_videos: int, stream: TextIO, interval_s: float = 0.5):
        self._directory = directory
        self._total_videos = total_videos
        self._stream = stream
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="mimamo-progress", daemon=True)
        self._videos = None
        self._frames = None

    def __enter__(self) -> "ProgressBars":
        self._videos = tqdm(total=self._total_videos, desc="videos", unit="video", position=0, file=self._stream)
        self._frames = tqdm(desc="frames", unit="frame", position=1, file=self._stream)
        self._thread.start()
        return self

    def _refresh(self) -> None:
        counts = read_progress(self._directory)
        self._videos.update(counts.videos_done - self._videos.n)
        self._videos.set_postfix(failed=counts.videos_failed, refresh=False)
        self._frames.update(counts.frames_decoded - self._frames.n)

    def _poll(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._refresh()

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self._refresh()
        self._frames.close()
        self._videos.close()

"""Wall-clock timing shared by the benchmark scripts."""
import dataclasses
import statistics
import time
from typing import Any, Callable, Optional


@dataclasses.dataclass(frozen=True)
class Timing:
    """Wall times of repeated runs, in seconds, and what the last run returned."""

    median_s: float
    best_s: float
    result: Any


def time_runs(fn: Callable[[], Any], repeats: int, sync: Optional[Callable[[], None]] = None) -> Timing:
    """Times ``repeats`` calls of ``fn`` after one warm-up call.

    Args:
        fn: the work to time.
        repeats: timed calls (>= 1).
        sync: called before starting and before stopping the clock (e.g. ``torch.cuda.synchronize``).
    """
    result = fn()
    times = []
    for _ in range(repeats):
        if sync is not None:
            sync()
        start = time.perf_counter()
        result = fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - start)
    return Timing(statistics.median(times), min(times), result)

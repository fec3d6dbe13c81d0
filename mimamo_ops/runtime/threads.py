"""How many threads one worker process may use, and applying that share to every threaded library.

A machine runs P worker processes of the pipeline side by side: ``--direct_num_workers`` processes of the local
DirectRunner in multi_processing mode, ``--sdk_worker_parallelism`` SDK workers of a portable runner (Flink,
Spark), or one SDK process per vCPU on Dataflow. Left alone, each of them starts as many torch/OpenMP, OpenVINO,
OpenCV and FFmpeg threads as the machine has cores, so P processes run P times too many threads and fight for
the caches (measured: 2 processes on 2 cores were 1.8x slower than one). Each process therefore takes
``usable_cpus() // P`` threads (at least 1) for every library, in the DoFn's ``setup()`` before it loads the
models: ``apply_thread_budget``.

The number of CPUs is the process's affinity mask (``os.sched_getaffinity``; what ``taskset``, Docker's
``--cpuset-cpus`` and Kubernetes' static CPU manager set), capped by a cgroup CPU quota (``cpu.max`` of cgroup
v2, or ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` of v1; what Docker's ``--cpus`` and Kubernetes' CPU limits
set), rounded down, at least 1.
"""
import logging
import math
import os
import sys
from pathlib import Path
from typing import Optional

__all__ = ["apply_thread_budget", "decoder_threads", "threads_per_worker", "usable_cpus"]

LOGGER = logging.getLogger(__name__)

_CGROUP_ROOT = Path("/sys/fs/cgroup")
# Environment variables read by OpenMP, MKL, OpenBLAS and numexpr when their thread pools start; set so that
# libraries initialised after apply_thread_budget (and child processes) follow the same share.
_THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
_decoder_threads = 0  # 0: FFmpeg picks (all cores) until apply_thread_budget sets a share


def _cgroup_cpu_limit(root: Path) -> Optional[float]:
    """CPUs allowed by a cgroup quota (v2 ``cpu.max``, else v1 ``cpu.cfs_*``), or None without a quota."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def usable_cpus(cgroup_root: Path = _CGROUP_ROOT) -> int:
    """CPUs this process may run on: the affinity mask capped by the cgroup quota, >= 1.

    Args:
        cgroup_root: where the cgroup file system is mounted (injected in unit tests).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    limit = _cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cpus = min(cpus, math.floor(limit))
    return max(1, cpus)


def threads_per_worker(worker_processes: int, cpus: Optional[int] = None) -> int:
    """Threads for each of ``worker_processes`` processes sharing ``cpus`` CPUs (default ``usable_cpus()``).

    Args:
        worker_processes: pipeline processes on this machine, >= 1.
        cpus: CPUs the processes share.

    Returns:
        ``cpus // worker_processes``, at least 1.

    Raises:
        ValueError: ``worker_processes`` < 1.
    """
    if worker_processes < 1:
        raise ValueError(f"worker_processes must be >= 1; got {worker_processes}")
    cpus = usable_cpus() if cpus is None else cpus
    return max(1, cpus // worker_processes)


def decoder_threads() -> int:
    """FFmpeg decoder threads for this process: the budget set by ``apply_thread_budget``, or 0 (FFmpeg's
    choice) if none was set."""
    return _decoder_threads


def apply_thread_budget(threads: int) -> None:
    """Makes every threaded library of this process use ``threads`` threads.

    torch intra-op threads (and so its OpenMP pool), OpenCV's pool, the FFmpeg decoder (``decoder_threads``),
    and the ``OMP_NUM_THREADS``-style variables for pools started later (a torch imported after this call takes
    its count from them). OpenVINO takes the count when a model
    is compiled (``BackboneRunner`` reads ``torch.get_num_threads()``). torch's inter-op pool is left as is: it
    can only be sized before its first use, and the pipeline does not use it.

    Args:
        threads: threads per library, >= 1.

    Raises:
        ValueError: ``threads`` < 1.
    """
    global _decoder_threads
    if threads < 1:
        raise ValueError(f"threads must be >= 1; got {threads}")
    import cv2

    for name in _THREAD_ENV_VARS:
        os.environ[name] = str(threads)
    torch = sys.modules.get("torch")  # not imported (a face stage's process on OpenVINO never imports it)
    if torch is not None:
        torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    _decoder_threads = threads
    LOGGER.info("thread budget: %d thread(s) per library in process %d", threads, os.getpid())

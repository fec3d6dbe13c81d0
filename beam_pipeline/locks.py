"""One writer per output: a run holds ``<output>/_LOCK/`` while it writes, and a second run is refused.

A run that starts on an output

1. writes its claim ``_LOCK/<run_id>.json`` (run id, host, process id and start, start time, heartbeat),
   whole or not at all (``beam_pipeline.storage``);
2. lists ``_LOCK/`` and reads the other claims. A claim is *live* while its heartbeat is recent: its file was
   last written less than ``STALE_AFTER_S`` before this run's own claim (both times come from the storage's
   clock, the files' modification times, so the machines' clocks do not matter), unless it is provably dead:
   written on this machine (same host name and boot) by a process that no longer exists, as after ``kill -9``.
   If another claim is live, the run removes its own claim and stops with one line naming the other run;
   stale and dead claims are removed (the run takes over);
3. rewrites its claim every ``HEARTBEAT_S`` seconds from a thread while it runs, and removes it at the end.

Why claims and not one lock file created only if absent: Beam's ``FileSystems`` offers no conditional write
(Cloud Storage's ``if_generation_match=0`` and S3's ``If-None-Match`` are reachable only through each client's
own API, and the Cloud Storage emulator ignores the former). Claims need only whole writes and a
strongly consistent listing, which local disks, Cloud Storage and S3 all give: of two runs that start at
once, the one that lists last sees the other's claim, so at most one goes on (both may stop, and the user
starts one again). Nothing else under the output is written or deleted before the claim is held, so a
refused run never touches a live run's files.

A run whose launcher is killed while its job goes on (a cluster job is not stopped with its launcher) stops
heartbeating: its claim goes stale after ``STALE_AFTER_S`` and another run may take over while the old job still
writes. Stop such a job on the cluster before running again.
"""
import datetime
import json
import logging
import os
import posixpath
import socket
import threading
import time
import uuid
from typing import Dict, List, Optional

from apache_beam.io.filesystems import FileSystems

from beam_pipeline.storage import delete_files, is_remote, list_files, local_path, read_bytes, write_atomically

__all__ = ["HEARTBEAT_S", "LOCK_DIR", "STALE_AFTER_S", "OutputInUseError", "OutputLock", "new_run_id"]

LOGGER = logging.getLogger(__name__)
LOCK_DIR = "_LOCK"
HEARTBEAT_S = 20.0  # a live run rewrites its claim this often
STALE_AFTER_S = 120.0  # a claim not rewritten for this long is stale (six missed heartbeats)


class OutputInUseError(ValueError):
    """Another live run holds the output (one line naming it)."""


def new_run_id() -> str:
    """A unique, time-ordered run id: UTC time to the second and 6 random hex digits."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _process_start(pid: int) -> Optional[int]:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat``), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _process_alive(pid: int, start: Optional[int]) -> bool:
    if os.path.isdir("/proc/self"):
        return _process_start(pid) is not None and (start is None or _process_start(pid) == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe_claim(claim: Dict, age_s: float) -> str:
    return (f"run {claim.get('run_id')} (host {claim.get('host')}, pid {claim.get('pid')}, started "
            f"{claim.get('started')}, last heartbeat {age_s:.0f} s ago)")


class OutputLock:
    """The claim of one run on an output (module docstring); a context manager that heartbeats while held.

    Args:
        output: the output folder (local, ``gs://``, ``s3://``).
        run_id: this run's id (default ``new_run_id()``).
        heartbeat_s: seconds between two rewrites of the claim.
        stale_after_s: a claim older than this (relative to this run's own claim) is stale.
    """

    def __init__(self, output: str, run_id: Optional[str] = None, heartbeat_s: float = HEARTBEAT_S,
                 stale_after_s: float = STALE_AFTER_S):
        self.output = output
        self.run_id = run_id or new_run_id()
        self._heartbeat_s = heartbeat_s
        self._stale_after_s = stale_after_s
        self._folder = FileSystems.join(output, LOCK_DIR)
        self._path = FileSystems.join(self._folder, f"{self.run_id}.json")
        self._started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.held = False
        self.lost = False  # another run took the claim over while this one was held

    def _claim(self) -> Dict:
        pid = os.getpid()
        return {"run_id": self.run_id, "host": socket.gethostname(), "boot_id": _boot_id(), "pid": pid,
                "pid_start": _process_start(pid), "started": self._started,
                "heartbeat": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}

    def _write_claim(self) -> None:
        write_atomically(self._path, json.dumps(self._claim(), sort_keys=True).encode("utf-8"))

    def _is_dead(self, claim: Dict) -> bool:
        if claim.get("host") != socket.gethostname():
            return False
        if claim.get("boot_id") and _boot_id() and claim["boot_id"] != _boot_id():
            return True  # this machine rebooted since
        pid = claim.get("pid")
        return isinstance(pid, int) and not _process_alive(pid, claim.get("pid_start"))

    def acquire(self) -> None:
        """Takes the output (module docstring, steps 1-2).

        Raises:
            OutputInUseError: another live run holds it.
        """
        self._write_claim()
        claims = list_files(FileSystems.join(self._folder, "*.json"))
        mine = next((stored for stored in claims if posixpath.basename(stored.path) == f"{self.run_id}.json"), None)
        now_s = mine.modified_s if mine is not None else time.time()
        stale: List[str] = []
        for stored in claims:
            if stored is mine:
                continue
            try:
                claim = json.loads(read_bytes(stored.path).decode("utf-8"))
            except (OSError, ValueError):  # removed meanwhile, or written by something else
                continue
            age_s = max(0.0, now_s - stored.modified_s)
            if age_s > self._stale_after_s or self._is_dead(claim):
                LOGGER.warning("%s: taking over from %s, which is no longer running", self.output,
                               _describe_claim(claim, age_s))
                stale.append(stored.path)
                continue
            self._remove_claim()
            raise OutputInUseError(f"--output={self.output!r} is in use by {_describe_claim(claim, age_s)}; wait "
                                   "for it to end (or stop it), then run again")
        delete_files(stale)
        self.held = True
        LOGGER.info("%s: held by run %s", self.output, self.run_id)

    def refresh(self) -> None:
        """Rewrites the claim (a heartbeat); notes when another run has taken it over meanwhile."""
        if not FileSystems.exists(self._path):
            if not self.lost:
                LOGGER.error("%s: the claim of run %s is gone: another run took the output over (this run's "
                             "heartbeats stopped for over %.0f s); its tables may need a rerun", self.output,
                             self.run_id, self._stale_after_s)
            self.lost = True
            return
        self._write_claim()

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat_s):
            try:
                self.refresh()
            except Exception as error:  # pylint: disable=broad-except  # a missed heartbeat is retried later
                LOGGER.warning("%s: heartbeat failed (%s); trying again in %.0f s", self.output, error,
                               self._heartbeat_s)

    def _remove_claim(self) -> None:
        delete_files([self._path])
        folder = local_path(self._folder)
        if not is_remote(self._folder) and os.path.isdir(folder) and not os.listdir(folder):
            try:
                os.rmdir(folder)
            except OSError:  # another run's claim appeared meanwhile
                pass

    def release(self) -> None:
        """Stops the heartbeat and removes the claim."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.held:
            self.held = False
            if not self.lost:
                self._remove_claim()
            LOGGER.info("%s: released by run %s", self.output, self.run_id)

    def __enter__(self) -> "OutputLock":
        self.acquire()
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="mimamo-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

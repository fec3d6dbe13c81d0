"""Test probe for cluster runs, loaded by every Python process started with this folder on ``PYTHONPATH``.

When ``$MIMAMO_PROBE_DIR`` is set, it wraps two functions of the real pipeline code so that each process
appends JSON lines to ``$MIMAMO_PROBE_DIR/<pid>.jsonl``:

* ``{"event": "video", "uri", "start", "end"}``: one ``PredictVideoDoFn.process`` call (wall-clock seconds);
* ``{"event": "unit", "uri", "index", "start", "end"}``: one work unit of a video (``EncodeUnitDoFn.process``);
* ``{"event": "fetch", "uri"}``: one download of a remote weights file (``remote_files._fetch_into_cache``);
* ``{"event": "sdk_process"}``: an SDK harness process started (by the worker pool, for a job's environment).

Every line also carries ``pid`` and ``pool`` (``$MIMAMO_WORKER_POOL``: which TaskManager's worker pool started
the process). The pipeline's results are unchanged; the probe observes them.

A test may also hold the processes of a job it has stopped (``hold_started_processes``): an SDK process started
before the time written in ``HOLD_FILE`` starts no further video. A job whose TaskManager was killed goes on
for seconds on the other one, and its processes run on after the job has failed; held, they finish at most the
video each is in, so the next run of the test still has videos to do.

One thing it does besides: while a test holds the barrier file (``BARRIER_FILE`` in ``$MIMAMO_PROBE_DIR``, holding
a token of that run), each SDK process's first video waits, at most ``BARRIER_WAIT_S``, until a video has started
in another pool during the same run. A runner that shares a job's videos out randomly may give one worker only
the inputs that fail at once (a corrupt and an empty file, a clip without a face), done before the other
worker's SDK process has started; the overlap the test looks for would then depend on that draw. Held, the
barrier leaves only what the test means: whether the runner keeps both workers busy at the same time. A runner
that used one worker at a time never releases it, and the test fails.
"""
import json
import os
import time

BARRIER_FILE = "barrier"
UNIT_BARRIER_FILE = "unit-barrier"  # the same for each SDK process's first work unit
BARRIER_WAIT_S = 120.0
HOLD_FILE = "hold"
HOLD_WAIT_S = 600.0
_STARTED = time.time()  # when this process started (sitecustomize runs first)


def _record(event: dict) -> None:
    event.update(pid=os.getpid(), pool=os.environ.get("MIMAMO_WORKER_POOL"))
    path = os.path.join(os.environ["MIMAMO_PROBE_DIR"], f"{os.getpid()}.jsonl")
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(event) + "\n")


def _wait_for_another_pool(barrier: str = BARRIER_FILE) -> None:
    """While the barrier file exists: marks this pool as started in this run, then waits (at most
    ``BARRIER_WAIT_S``) until another pool has done the same."""
    directory = os.environ["MIMAMO_PROBE_DIR"]
    try:
        with open(os.path.join(directory, barrier), encoding="utf-8") as handle:
            token = handle.read().strip()
    except FileNotFoundError:
        return
    pool = os.environ["MIMAMO_WORKER_POOL"]
    open(os.path.join(directory, f"started-{token}-{pool}"), "w", encoding="utf-8").close()
    deadline = time.monotonic() + BARRIER_WAIT_S
    while time.monotonic() < deadline:
        if any(name.startswith(f"started-{token}-") and name != f"started-{token}-{pool}"
               for name in os.listdir(directory)):
            return
        time.sleep(0.05)


def hold_started_processes(probe_dir) -> None:
    """From now on, the SDK processes started until now start no further video (used by the tests)."""
    path = os.path.join(str(probe_dir), HOLD_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(repr(time.time()))
    os.replace(path + ".tmp", path)


def _wait_while_held() -> None:
    """Waits while this process is held (it started before the hold's time); gives up with an error after
    ``HOLD_WAIT_S``, so that a held process never goes on to commit a video."""
    deadline = time.monotonic() + HOLD_WAIT_S
    while True:
        try:
            with open(os.path.join(os.environ["MIMAMO_PROBE_DIR"], HOLD_FILE), encoding="utf-8") as handle:
                if float(handle.read()) <= _STARTED:
                    return
        except FileNotFoundError:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("test probe: this SDK process's job was stopped by the test; no further video")
        time.sleep(0.05)


def _install() -> None:
    from beam_pipeline import predict, remote_files, units  # pylint: disable=import-outside-toplevel

    process = predict.PredictVideoDoFn.process
    encode = units.EncodeUnitDoFn.process
    fetch = remote_files._fetch_into_cache  # pylint: disable=protected-access

    waited = []  # this process's first video waits at the barrier, no later one

    def probed_process(self, uri):
        _wait_while_held()
        if not waited:
            waited.append(True)
            _wait_for_another_pool()
        start = time.time()
        yield from process(self, uri)
        _record({"event": "video", "uri": uri, "start": start, "end": time.time()})

    waited_unit = []

    def probed_encode(self, unit):
        if not waited_unit:
            waited_unit.append(True)
            _wait_for_another_pool(UNIT_BARRIER_FILE)
        start = time.time()
        yield from encode(self, unit)
        _record({"event": "unit", "uri": unit.video_uri, "index": unit.index, "start": start, "end": time.time()})

    def probed_fetch(uri, *args, **kwargs):
        _record({"event": "fetch", "uri": uri})
        return fetch(uri, *args, **kwargs)

    predict.PredictVideoDoFn.process = probed_process
    units.EncodeUnitDoFn.process = probed_encode
    remote_files._fetch_into_cache = probed_fetch  # pylint: disable=protected-access


def _is_sdk_harness() -> bool:
    """Whether this process is an SDK harness: the worker pool starts ``python -c '... SdkHarness(...)'``."""
    try:
        with open("/proc/self/cmdline", "rb") as handle:
            return b"SdkHarness(" in handle.read()
    except OSError:
        return False


if os.environ.get("MIMAMO_PROBE_DIR") and os.environ.get("MIMAMO_WORKER_POOL"):
    if _is_sdk_harness():
        _record({"event": "sdk_process"})
    _install()

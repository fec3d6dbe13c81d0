"""Test probe for cluster runs, loaded by every Python process started with this folder on ``PYTHONPATH``.

When ``$MIMAMO_PROBE_DIR`` is set, it wraps two functions of the real pipeline code so that each process
appends JSON lines to ``$MIMAMO_PROBE_DIR/<pid>.jsonl``:

* ``{"event": "video", "uri", "start", "end"}``: one ``PredictVideoDoFn.process`` call (wall-clock seconds);
* ``{"event": "fetch", "uri"}``: one download of a remote weights file (``remote_files._fetch_into_cache``);
* ``{"event": "sdk_process"}``: an SDK harness process started (by the worker pool, for a job's environment).

Every line also carries ``pid`` and ``pool`` (``$MIMAMO_WORKER_POOL``: which TaskManager's worker pool started
the process). The pipeline's behaviour is unchanged; the probe only observes it.
"""
import json
import os
import time


def _record(event: dict) -> None:
    event.update(pid=os.getpid(), pool=os.environ.get("MIMAMO_WORKER_POOL"))
    path = os.path.join(os.environ["MIMAMO_PROBE_DIR"], f"{os.getpid()}.jsonl")
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(event) + "\n")


def _install() -> None:
    from beam_pipeline import predict, remote_files  # pylint: disable=import-outside-toplevel

    process = predict.PredictVideoDoFn.process
    fetch = remote_files._fetch_into_cache  # pylint: disable=protected-access

    def probed_process(self, uri):
        start = time.time()
        yield from process(self, uri)
        _record({"event": "video", "uri": uri, "start": start, "end": time.time()})

    def probed_fetch(uri, *args, **kwargs):
        _record({"event": "fetch", "uri": uri})
        return fetch(uri, *args, **kwargs)

    predict.PredictVideoDoFn.process = probed_process
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

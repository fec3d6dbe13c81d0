"""Checks shared by the Flink and Spark tests: same rows as the DirectRunner, parallel videos, one fetch each.

``check_worker_pools_run`` is the test body both engines share; each engine's test gives its own runner flags and
checks its own cluster's record of the job. ``check_loopback_run`` is Spark's LOOPBACK test (Flink's LOOPBACK run
is ``test_flink_faults``, beside videos with faults).
"""
import contextlib
import itertools
import re
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.metrics.metric import MetricsFilter

from beam_pipeline.run import run
from beam_pipeline.metrics import METRICS_NAMESPACE
from tests.cluster.conftest import COPIES, Running, read_probe
from tests.cluster.probe.sitecustomize import BARRIER_FILE
from tests.pipeline.test_pipeline import KEY_COLUMNS, pipeline_flags, read_sorted

ATOL = 1e-5
GOOD_CLIPS = ("one_face.mp4", "two_faces.mp4", "no_face.mp4")  # the clips that are decoded to the end
ALL_CLIPS = GOOD_CLIPS + ("corrupt.mp4", "empty.mp4")


def assert_same_table(want: pa.Table, got: pa.Table, what: str, skip=()) -> None:
    assert got.num_rows == want.num_rows, what
    assert got.column_names == want.column_names, what
    for column in want.column_names:
        if column in skip:
            continue
        if pa.types.is_floating(want.schema.field(column).type):
            np.testing.assert_allclose(got[column].to_numpy(zero_copy_only=False),
                                       want[column].to_numpy(zero_copy_only=False), rtol=0, atol=ATOL,
                                       err_msg=f"{what}.{column}")
        else:
            assert got[column].equals(want[column]), f"{what}.{column}"


def _rows_of(table: pa.Table, uris) -> pa.Table:
    return table.filter(pc.is_in(table["video_uri"], value_set=pa.array(sorted(uris))))


def assert_rows_match(expected: Dict[str, pa.Table], output: Path, copies: Dict[str, str] = None) -> None:
    """Frames and videos tables under ``output`` equal ``expected`` (floats within ``ATOL``).

    ``copies`` maps the URI of each extra input to the URI of the clip it is a copy of: its rows must be that
    clip's rows (all but the URI and video id).
    """
    copies = copies or {}
    actual = {"frames": read_sorted(output / "frames", KEY_COLUMNS), "videos": read_sorted(output / "videos",
                                                                                           ["video_uri"])}
    for table in ("frames", "videos"):
        originals = set(expected[table]["video_uri"].to_pylist())
        assert_same_table(expected[table], _rows_of(actual[table], originals), table)
        for copy, original in copies.items():
            assert_same_table(_rows_of(expected[table], {original}), _rows_of(actual[table], {copy}),
                         f"{table} of {copy}", skip=("video_uri", "video_id"))
    status = {Path(row["video_uri"]).name: row["status"] for row in actual["videos"].to_pylist()}
    assert status == dict({"one_face.mp4": "ok", "two_faces.mp4": "ok", "no_face.mp4": "no_face",
                           "corrupt.mp4": "failed", "empty.mp4": "failed"},
                          **{Path(copy).name: "ok" for copy in copies})


def counters(result) -> Dict[str, int]:
    """The pipeline's ``mimamo`` counters as the runner reports them (committed, else attempted)."""
    found = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    totals: Dict[str, int] = {}
    for counter in found:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + value
    return totals


def copies_of(clip_folder: Path, copies_folder: Path) -> Dict[str, str]:
    """URI of each copy in ``copies_folder`` -> URI of the clip it copies (``assert_rows_match``'s ``copies``)."""
    return {str(copies_folder / name): str(clip_folder / "one_face.mp4") for name in COPIES}


def assert_counters(result, output: Path, copies: int = 0) -> None:
    """The counters agree with what the tables under ``output`` hold (``copies``: extra ok videos)."""
    totals = counters(result)
    assert totals["videos_ok"] == 2 + copies and totals["videos_no_face"] == 1 and totals["videos_failed"] == 2, \
        totals
    assert totals["frame_rows"] == pq.read_table(output / "frames").num_rows, totals


def assert_parallel_on_two_workers(videos: List[dict], names) -> Tuple[dict, dict]:
    """Two videos ran at the same time in SDK processes of two different worker pools; returns that pair.

    ``names``: the file names of every input video (each must have been processed exactly once).
    """
    assert sorted(Path(record["uri"]).name for record in videos) == sorted(names)
    return assert_overlap_on_two_pools(videos)


def assert_overlap_on_two_pools(records: List[dict]) -> Tuple[dict, dict]:
    """Two of the probe's timed records (videos or work units) ran at the same time in SDK processes of two
    different worker pools; returns that pair."""
    assert {record["pool"] for record in records} == {"pool-0", "pool-1"}, records
    for first, second in itertools.combinations(records, 2):
        if first["pool"] != second["pool"] and first["start"] < second["end"] and second["start"] < first["end"]:
            return first, second
    raise AssertionError(f"nothing overlapped in time on different workers: {records}")


def assert_weights_fetched_once_per_process(records: List[dict], weight_uris: Tuple[str, str]) -> None:
    """Each SDK process that predicted fetched each weights file exactly once (and nothing else)."""
    predicting = {record["pid"] for record in records if record["event"] == "video"}
    fetches = [(record["pid"], record["uri"]) for record in records if record["event"] == "fetch"]
    assert sorted(fetches) == sorted((pid, uri) for pid in predicting for uri in weight_uris), fetches


def assert_sdk_processes_per_pool(records: List[dict], most: int) -> None:
    """Each of the two worker pools started between 1 and ``most`` SDK processes for the job: the runner kept
    its environment between tasks (``options.SDK_ENVIRONMENT_CACHE_MS``) instead of starting one per task (Spark)
    or per scheduling region (Flink)."""
    started = Counter(record["pool"] for record in records if record["event"] == "sdk_process")
    assert set(started) == {"pool-0", "pool-1"} and max(started.values()) <= most, started


@contextlib.contextmanager
def probe_barrier(probe_dir: Path, barrier_file: str = BARRIER_FILE) -> Iterator[None]:
    """Holds the probe's barrier (``probe/sitecustomize.py``) while the block runs: each SDK process's first video
    (``UNIT_BARRIER_FILE``: first work unit) waits until one has started in the other pool, so that the overlap
    checked afterwards does not depend on which inputs the runner happened to give each worker."""
    barrier = probe_dir / barrier_file
    barrier.write_text(uuid.uuid4().hex)
    try:
        yield
    finally:
        barrier.unlink()


_ERROR_LINE = re.compile(r" ERROR |^(Caused by: )?[\w.$]+(Error|Exception|Rendezvous)\b")


def failure_report(run_output: Path, cluster_log_dir: Path, lines: int = 40) -> str:
    """What a failed Flink run left in its logs, for an assertion message: the last ``lines`` lines that name an
    error (ERROR records, each traceback's exception line, Java's ``Caused by:``) in the run's log under
    ``run_output/_logs`` and in the Flink daemons' logs under ``cluster_log_dir`` (a harness that closed its
    connection, an executor shut down early: the causes of a failed LOOPBACK job)."""
    def errors(paths) -> List[str]:
        return [f"{path.name}: {line}" for path in sorted(paths)
                for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                if _ERROR_LINE.search(line)][-lines:]

    return "\n".join(["", "-- errors in the run's log --", *errors((run_output / "_logs").glob("*.log")),
                       "-- errors in the cluster's logs --", *errors(cluster_log_dir.glob("flink-*.log"))])


def run_and_time(what: str, flags: List[str]):
    """Runs the pipeline with ``flags``, prints its wall time (for the CI log) and returns its result."""
    started = time.monotonic()
    result = run(flags)
    print(f"{what}: pipeline wall time {time.monotonic() - started:.1f} s")
    return result


def check_worker_pools_run(what: str, running: Running, engine_flags: Sequence[str], clip_folder: Path,
                           copies_folder: Path, remote_weights: Tuple[str, str], expected: Dict[str, pa.Table],
                           output: Path, sdk_processes_per_pool: Optional[int] = None) -> None:
    """The clips and the copies through ``running``'s EXTERNAL worker pools, the weights as ``gs://`` URIs.

    The rows equal ``expected`` (the DirectRunner's; each copy's rows its original's), the counters agree with
    the tables, two videos ran at the same time in the SDK processes of two different pools, each pool started
    at most ``sdk_processes_per_pool`` SDK processes (when given), and each SDK process fetched each weights file
    once.
    """
    copies = copies_of(clip_folder, copies_folder)
    with probe_barrier(running.probe_dir):
        result = run_and_time(what, pipeline_flags(clip_folder, remote_weights, output)
                              + ["--input", str(copies_folder)] + list(engine_flags)
                              + ["--environment_type=EXTERNAL",
                                 f"--environment_config={running.cluster.environment_config}"])
    assert_rows_match(expected, output, copies)
    assert_counters(result, output, copies=len(copies))
    records = read_probe(running.probe_dir)
    assert_parallel_on_two_workers([record for record in records if record["event"] == "video"],
                                   ALL_CLIPS + COPIES)
    if sdk_processes_per_pool is not None:
        assert_sdk_processes_per_pool(records, sdk_processes_per_pool)
    assert_weights_fetched_once_per_process(records, remote_weights)


def check_loopback_run(what: str, engine_flags: Sequence[str], clip_folder: Path, weights: Tuple[Path, Path],
                       expected: Dict[str, pa.Table], output: Path) -> None:
    """The clips with ``--environment_type=LOOPBACK`` (the SDK harness in this process): the rows equal
    ``expected`` and the counters agree with the tables."""
    result = run_and_time(what, pipeline_flags(clip_folder, weights, output) + list(engine_flags)
                          + ["--environment_type=LOOPBACK"])
    assert_rows_match(expected, output)
    assert_counters(result, output)

"""Checks shared by the Flink and Spark tests: same rows as the DirectRunner, parallel videos, one fetch each."""
import itertools
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pyarrow as pa
from apache_beam.metrics.metric import MetricsFilter

from beam_pipeline.run import run
from beam_pipeline.transforms import METRICS_NAMESPACE
from tests.pipeline.test_pipeline import KEY_COLUMNS, read_sorted

ATOL = 1e-5
GOOD_CLIPS = ("one_face.mp4", "two_faces.mp4", "no_face.mp4")  # the clips that are decoded to the end
ALL_CLIPS = GOOD_CLIPS + ("corrupt.mp4", "empty.mp4")


def assert_rows_match(expected: Dict[str, pa.Table], output: Path) -> None:
    """Frames and videos tables under ``output`` equal ``expected`` (floats within ``ATOL``)."""
    actual = {"frames": read_sorted(output / "frames", KEY_COLUMNS), "videos": read_sorted(output / "videos",
                                                                                           ["video_uri"])}
    for table in ("frames", "videos"):
        want, got = expected[table], actual[table]
        assert got.num_rows == want.num_rows, table
        assert got.column_names == want.column_names, table
        for column in want.column_names:
            if pa.types.is_floating(want.schema.field(column).type):
                np.testing.assert_allclose(got[column].to_numpy(zero_copy_only=False),
                                           want[column].to_numpy(zero_copy_only=False), rtol=0, atol=ATOL,
                                           err_msg=f"{table}.{column}")
            else:
                assert got[column].equals(want[column]), f"{table}.{column}"
    status = {Path(row["video_uri"]).name: row["status"] for row in actual["videos"].to_pylist()}
    assert status == {"one_face.mp4": "ok", "two_faces.mp4": "ok", "no_face.mp4": "no_face",
                      "corrupt.mp4": "failed", "empty.mp4": "failed"}


def counters(result) -> Dict[str, int]:
    """The pipeline's ``mimamo`` counters as the runner reports them (committed, else attempted)."""
    found = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    totals: Dict[str, int] = {}
    for counter in found:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + value
    return totals


def assert_counters(result, frames: pa.Table) -> None:
    """The counters agree with what the tables hold."""
    totals = counters(result)
    assert totals["videos_ok"] == 2 and totals["videos_no_face"] == 1 and totals["videos_failed"] == 2, totals
    assert totals["frame_rows"] == frames.num_rows, totals


def assert_parallel_on_two_workers(videos: List[dict]) -> Tuple[dict, dict]:
    """Two videos ran at the same time in SDK processes of two different worker pools; returns that pair."""
    assert {Path(record["uri"]).name for record in videos} == set(ALL_CLIPS)
    assert {record["pool"] for record in videos} == {"pool-0", "pool-1"}, videos
    for first, second in itertools.combinations(videos, 2):
        if first["pool"] != second["pool"] and first["start"] < second["end"] and second["start"] < first["end"]:
            return first, second
    raise AssertionError(f"no two videos overlapped in time on different workers: {videos}")


def assert_weights_fetched_once_per_process(records: List[dict], weight_uris: Tuple[str, str]) -> None:
    """Each SDK process that predicted fetched each weights file exactly once (and nothing else)."""
    predicting = {record["pid"] for record in records if record["event"] == "video"}
    fetches = [(record["pid"], record["uri"]) for record in records if record["event"] == "fetch"]
    assert sorted(fetches) == sorted((pid, uri) for pid in predicting for uri in weight_uris), fetches


def run_and_time(what: str, flags: List[str]):
    """Runs the pipeline with ``flags``, prints its wall time (for the CI log) and returns its result."""
    started = time.monotonic()
    result = run(flags)
    print(f"{what}: pipeline wall time {time.monotonic() - started:.1f} s")
    return result

"""The tables built from committed videos: the plan, big row groups, and a compaction mended after a kill.

Videos are committed here with ``commits.commit_video_result`` from synthetic rows (no model), so that many
videos and small thresholds can show several files and row groups quickly.
"""
import os
from pathlib import Path
from typing import List

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beam_pipeline.commits import (COMMITS_DIR, RECORD_FILE, RETRY_RECORD_FILE, CommitListing, Committed,
                                   commit_video_result, data_file_name, list_commits)
from beam_pipeline.compaction import CompactTables, plan_shards, write_parquet_shard
from beam_pipeline.rows import (FrameRow, SnippetRow, VideoResult, VideoRow, arrow_schema, compute_video_id,
                                empty_table, failed_video_row)

METADATA = {"mimamo.version": "9.9.9"}


def video_result(uri: str, frames: int, faces: int = 1) -> VideoResult:
    """An ok video with ``frames`` rows per face (or a no_face video when ``frames`` is 0)."""
    video_id = compute_video_id(uri)
    rows = [FrameRow(uri, video_id, face, face, "new", index, index / 30.0, 0.1 * face, -0.1, 0.1, -0.1, 1.0, 2.0,
                     3.0, 4.0, 0.9)._asdict() for face in range(faces) for index in range(frames)]
    table = pa.Table.from_pylist(rows, schema=arrow_schema(FrameRow)) if rows else empty_table(FrameRow)
    status = "ok" if frames else "no_face"
    row = VideoRow(uri, video_id, status, None, None, None, frames / 30.0, 30.0, frames, 0, faces if frames else 0,
                   frames, 0.1 if frames else None, -0.1 if frames else None, None)
    return VideoResult(row, table, empty_table(SnippetRow))


def commit_corpus(output: Path, counts: List[int]) -> List[str]:
    uris = [f"/corpus/video{index:03d}.mp4" for index in range(len(counts))]
    for uri, count in zip(uris, counts):
        commit_video_result(str(output), video_result(uri, count))
    commit_video_result(str(output), VideoResult.of_row(failed_video_row("/corpus/broken.mp4", "probe", "VideoError: x")))
    commit_video_result(str(output), VideoResult.of_row(failed_video_row(
        "/corpus/flaky.mp4", "read", "ConnectionResetError: reset", error_kind="transient")))
    return uris


def compact(output: Path, **settings) -> List[str]:
    with beam.Pipeline() as pipeline:
        done = pipeline | beam.Create([Committed("x", "ok", 0)]).with_output_types(Committed)
        _ = done | CompactTables(str(output), METADATA, **settings)
    return sorted(path.name for path in (output / "frames").iterdir())


def listing(video_id: str, frame_rows: int, record=RECORD_FILE) -> CommitListing:
    return CommitListing(video_id, record, frame_rows, 0, ())


def test_the_plan_cuts_videos_in_id_order_into_ranges_of_about_the_target_rows():
    listings = [listing(f"{index:016x}", 100) for index in range(10)] + [listing("f" * 16, 100, record=None)]
    plans = plan_shards(reversed(listings), target_file_rows=250, video_rows_per_file=4)
    assert [len(plan.videos) for plan in plans] == [2, 3, 2, 3]  # 1000 rows in 4 ranges of about 250
    ids = [video.video_id for plan in plans for video in plan.videos]
    assert ids == sorted(ids) == [f"{index:016x}" for index in range(10)]  # not the uncommitted one
    assert {plan.shards for plan in plans} == {4} and {plan.video_shards for plan in plans} == {3}
    assert [video.video_shard for plan in plans for video in plan.videos] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert plan_shards(listings, target_file_rows=250, video_rows_per_file=4) == plans  # input order: no effect
    assert [len(plan.videos) for plan in plan_shards(listings, num_shards=3)] == [3, 4, 3]
    (empty,) = plan_shards([])
    assert (empty.shards, empty.video_shards, list(empty.videos)) == (1, 1, [])


def test_a_shard_is_written_in_row_groups_of_the_given_size_in_order(tmp_path):
    tables = [video_result(f"/v/{index}.mp4", count).frames for index, count in enumerate((5, 0, 7, 3))]
    rows, groups = write_parquet_shard(str(tmp_path / "part.parquet"), arrow_schema(FrameRow, METADATA), tables,
                                       row_group_rows=4)
    metadata = pq.read_metadata(tmp_path / "part.parquet")
    assert (rows, groups) == (15, 4) and metadata.num_rows == 15
    assert [metadata.row_group(index).num_rows for index in range(4)] == [4, 4, 4, 3]
    assert pq.read_table(tmp_path / "part.parquet").equals(pa.concat_tables(tables).replace_schema_metadata(
        arrow_schema(FrameRow, METADATA).metadata))
    assert metadata.metadata[b"mimamo.version"] == b"9.9.9"


def test_a_shard_that_fails_while_written_leaves_no_file(tmp_path):
    def tables():
        yield video_result("/v/a.mp4", 3).frames
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        write_parquet_shard(str(tmp_path / "part.parquet"), arrow_schema(FrameRow), tables(), row_group_rows=2)
    assert os.listdir(tmp_path) == []


def read_table(folder: Path, keys) -> pa.Table:
    return pq.read_table(folder).sort_by([(key, "ascending") for key in keys])


def test_the_tables_hold_every_committed_video_once_in_big_row_groups(tmp_path):
    uris = commit_corpus(tmp_path, [40, 0, 25, 60, 10])
    assert compact(tmp_path, row_group_rows=32) == ["part-00000-of-00001.parquet"]
    frames = pq.ParquetFile(tmp_path / "frames" / "part-00000-of-00001.parquet")
    assert frames.metadata.num_rows == 135
    assert [frames.metadata.row_group(index).num_rows for index in range(frames.metadata.num_row_groups)] == [
        32, 32, 32, 32, 7]
    table = frames.read()
    order = list(zip(table["video_id"].to_pylist(), table["face_id"].to_pylist(), table["frame_index"].to_pylist()))
    assert order == sorted(order)  # video_id, face_id, frame_index
    videos = read_table(tmp_path / "videos", ["video_uri"])
    assert videos["video_uri"].to_pylist() == sorted(uris + ["/corpus/broken.mp4", "/corpus/flaky.mp4"])
    kinds = {row["video_uri"]: (row["status"], row["error_kind"]) for row in videos.to_pylist()}
    assert kinds["/corpus/broken.mp4"] == ("failed", "permanent")
    assert kinds["/corpus/flaky.mp4"] == ("failed", "transient")
    assert pq.read_metadata(tmp_path / "videos" / "part-00000-of-00001.parquet").metadata[b"mimamo.version"] == \
        b"9.9.9"


def test_a_compaction_killed_half_way_is_mended_by_the_next_and_the_tables_do_not_depend_on_it(tmp_path):
    commit_corpus(tmp_path, [40, 0, 25, 60, 10])
    settings = {"row_group_rows": 32, "target_file_rows": 50}
    names = compact(tmp_path, **settings)
    assert len(names) > 1  # several files
    uninterrupted = {table: read_table(tmp_path / table, ["video_id", "face_id", "frame_index"]
                                       if table == "frames" else ["video_id"]) for table in ("frames", "videos")}
    # what a kill during the next compaction leaves: one new file written, the others of the earlier plan, and
    # stale files of a plan with another count
    (tmp_path / "frames" / names[0]).unlink()
    stale = tmp_path / "frames" / "part-00000-of-00009.parquet"
    stale.write_bytes((tmp_path / "frames" / names[1]).read_bytes())
    (tmp_path / "videos" / "part-00000-of-00001.parquet").unlink()
    assert compact(tmp_path, **settings) == names
    for table, expected in uninterrupted.items():
        keys = ["video_id", "face_id", "frame_index"] if table == "frames" else ["video_id"]
        assert read_table(tmp_path / table, keys).equals(expected), table


def test_commits_are_listed_without_opening_a_file(tmp_path):
    commit_corpus(tmp_path, [40, 0])
    listings = list_commits(str(tmp_path))
    by_uri = {uri: listings[compute_video_id(uri)] for uri in ("/corpus/video000.mp4", "/corpus/video001.mp4",
                                                               "/corpus/broken.mp4", "/corpus/flaky.mp4")}
    assert by_uri["/corpus/video000.mp4"].record == RECORD_FILE and by_uri["/corpus/video000.mp4"].frame_rows == 40
    assert by_uri["/corpus/video001.mp4"].frame_rows == 0  # no_face: a record only
    assert by_uri["/corpus/broken.mp4"].record == RECORD_FILE
    assert by_uri["/corpus/flaky.mp4"].record == RETRY_RECORD_FILE
    assert len(listings) == 4 and np.all([len(item.paths) >= 1 for item in listings.values()])


def test_the_tables_take_the_data_file_the_record_names_not_a_strays(tmp_path):
    """A bundle retried with another row count (a run killed between its data file and its record, say) can leave a
    second data file beside the committed one; the record names the one it commits."""
    commit_corpus(tmp_path, [40])
    folder = tmp_path / COMMITS_DIR / compute_video_id("/corpus/video000.mp4")
    stray = video_result("/corpus/video000.mp4", 45).frames
    pq.write_table(stray, folder / data_file_name("frames", 45))
    assert list_commits(str(tmp_path))[folder.name].frame_rows == 45  # the plan may count the larger one
    compact(tmp_path)
    assert pq.read_table(tmp_path / "frames").num_rows == 40

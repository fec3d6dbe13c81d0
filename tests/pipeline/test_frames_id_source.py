"""The ``frames`` table says how each row's ``face_id`` was decided (``id_source``, issue 20)."""
import numpy as np

from beam_pipeline.sinks import FRAMES_SCHEMA, build_frames_table
from mimamo_ops.faces.records import ID_SOURCES


def test_id_source_column_follows_track_id_and_carries_the_face_records_values():
    names = FRAMES_SCHEMA.names
    assert names.index("id_source") == names.index("track_id") + 1
    count = 4
    values = np.zeros((count, 2), np.float32)
    table = build_frames_table("file:///v.mp4", 3, np.arange(count, dtype=np.int64), np.arange(count) / 30.0, values,
                               values, np.zeros((count, 4), np.float32), np.full(count, 0.9, np.float32),
                               np.array([5, 5, 7, 7], np.int32), np.array(["new", "new", "reid", "reid"]))
    assert table.schema.equals(FRAMES_SCHEMA.remove_metadata())
    assert table.column("id_source").to_pylist() == ["new", "new", "reid", "reid"]
    assert set(table.column("id_source").to_pylist()) <= set(ID_SOURCES)


def test_rows_built_without_id_sources_say_track():
    count = 2
    values = np.zeros((count, 2), np.float32)
    table = build_frames_table("file:///v.mp4", 0, np.arange(count, dtype=np.int64), np.arange(count) / 30.0, values,
                               values, np.zeros((count, 4), np.float32), np.full(count, 0.9, np.float32),
                               np.zeros(count, np.int32))
    assert table.column("id_source").to_pylist() == ["track", "track"]

"""Videos decoded from streams instead of local files (``mimamo_ops.decoding.sources.StreamSource``): the decoder
opens one stream per pass, and the isolated face stage's child reads it through its parent
(``mimamo_ops.faces.served_source``), so the storage client never leaves the parent process.
"""
import dataclasses
import io
import os
from pathlib import Path
from typing import BinaryIO, List

import numpy as np
import pytest

from mimamo_ops.decoding.sources import StreamSource
from mimamo_ops.decoding.video import iter_frames, probe_video
from mimamo_ops.faces.isolated_stage import IsolatedFaceStage
from mimamo_ops.faces.records import FaceConfig
from tests import clips


class FileStreams(StreamSource):
    """A local file served as streams, recording the process that opens each and whether it was closed."""

    def __init__(self, path: Path, fail: bool = False):
        super().__init__(f"mem://bucket/{path.name}")
        self.path = path
        self.fail = fail
        self.opened_by: List[int] = []
        self.streams: List[BinaryIO] = []

    def open(self) -> BinaryIO:
        if self.fail:
            raise OSError(f"{self.name}: storage down")
        self.opened_by.append(os.getpid())
        stream = io.BytesIO(self.path.read_bytes())
        self.streams.append(stream)
        return stream


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return clips.moving_face_clip(tmp_path_factory.mktemp("streams") / "face.mp4", n_frames=12)


def test_a_stream_source_decodes_to_its_files_frames_one_stream_per_pass(clip):
    source = FileStreams(clip)
    assert probe_video(source) == dataclasses.replace(probe_video(clip), path=source.name)
    got = list(iter_frames(source))
    want = list(iter_frames(clip))
    assert [(f.index, f.timestamp_s) for f in got] == [(f.index, f.timestamp_s) for f in want]
    for mine, theirs in zip(got, want):
        np.testing.assert_array_equal(mine.rgb, theirs.rgb)
    assert len(source.streams) == 2 and all(stream.closed for stream in source.streams)


def test_the_face_stage_process_reads_a_stream_source_through_its_parent(clip):
    source = FileStreams(clip)
    with IsolatedFaceStage(FaceConfig(), 1) as stage:
        streamed = stage.open_video(source)
        streamed_frames = list(streamed.frames)
        from_file = list(stage.open_video(str(clip)).frames)
        with pytest.raises(OSError, match="mem://bucket/face.mp4: storage down"):
            stage.open_video(FileStreams(clip, fail=True))
        assert len(list(stage.open_video(source).frames)) == len(from_file)  # the same process serves on
    assert streamed.info.path == source.name
    assert set(source.opened_by) == {os.getpid()}  # opened in this process only, never in the child
    assert [len(frame.faces) for frame in streamed_frames] == [len(frame.faces) for frame in from_file]
    assert sum(len(frame.faces) for frame in from_file) == len(from_file)
    for mine, theirs in zip(streamed_frames, from_file):
        for face, reference in zip(mine.faces, theirs.faces):
            assert (face.frame_index, face.face_id, face.box) == (reference.frame_index, reference.face_id,
                                                                   reference.box)
            np.testing.assert_array_equal(face.aligned, reference.aligned)
